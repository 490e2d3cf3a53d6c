"""Entry point of the S3 Kit plugin: registers the backend and its server side."""

from ipfs_accelerate_py import hookimpl


@hookimpl
def accelerate_backends():
    from .backend import S3KitBackend

    return [S3KitBackend]


@hookimpl
def accelerate_protocol_servers():
    from .server import S3Server

    return [S3Server]

"""Entry point of the S3 Kit plugin: registers the backend and its server side."""

from ipfs_accelerate_py import hookimpl


@hookimpl
def accelerate_backends():
    from .backend import S3KitBackend

    return [S3KitBackend]

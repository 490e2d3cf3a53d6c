"""Wire helpers shared by several backends (stream framing, rate-limit headers, shapes).

Backends import these so that plugins stay glue and never import each other.
"""

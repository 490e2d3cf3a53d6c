"""Semantic response caching for ipfs-accelerate: a chat or completion prompt that means
the same as a cached one, within the same scope, is answered from the cache.

    from ipfs_accelerate_py.caching import CacheConfig
    from ipfs_accelerate_semantic_cache import SemanticCache

    ClientConfig(cache=CacheConfig(semantic=SemanticCache("openai", "text-embedding-3-small")))

See docs/caching.md.
"""

from .index import VectorIndex
from .matcher import DEFAULT_THRESHOLD, SemanticCache
from .scope import scope_of, split_prompt

__all__ = ["DEFAULT_THRESHOLD", "SemanticCache", "VectorIndex", "scope_of", "split_prompt"]

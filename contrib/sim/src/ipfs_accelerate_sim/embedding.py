"""A deterministic *semantic* embedding for the simulator: texts that say the same thing
in other words get nearby vectors, so the semantic cache can be tested and measured
offline.

It is lexical, not a language model: lower-case words, contractions and possessives cut,
stop words dropped, a light stemmer, a small table of common synonyms mapped to one word,
then the stems hashed (signed feature hashing) into ``dims`` dimensions and normalised.
Two texts with the same content words score 1.0; each content word one has and the
other lacks lowers the cosine (e.g. 3 shared of 4 and 3: about 0.87).

Serve it from a protocol fake: ``server.compat.vectorizer = semantic_vector``.
"""

from __future__ import annotations

import hashlib
import math
import re
import struct

STOP_WORDS = frozenset("""
a an the of to in on at for from by with about into over under and or but if then so than
is are was were be been being am do does did doing have has had having can could would
should will shall may might must i me my we our you your he she it its they them their this
that these those there here what which who whom whose when where why how please tell me
kindly just also very really some any much many one s d ll ve re m t give show let
""".split())

#: Common synonyms, each mapped to one representative (both directions are the same word).
SYNONYMS = {
    "large": "big", "huge": "big", "enormous": "big", "small": "little", "tiny": "little",
    "fast": "quick", "rapid": "quick", "speedy": "quick", "purchase": "buy", "acquire": "buy",
    "automobile": "car", "vehicle": "car", "begin": "start", "commence": "start",
    "finish": "end", "complete": "end", "describe": "explain", "clarify": "explain",
    "movie": "film", "picture": "film", "physician": "doctor", "medic": "doctor",
    "assist": "help", "aid": "help", "reply": "answer", "respond": "answer",
    "simple": "easy", "difficult": "hard", "tough": "hard", "happy": "glad", "joyful": "glad",
    "sad": "unhappy", "error": "mistake", "fault": "mistake", "city": "town",
    "capital": "capital", "nation": "country", "population": "people", "inhabitants": "people",
    "residents": "people", "recipe": "recipe", "cook": "make", "prepare": "make",
    "create": "make", "build": "make", "write": "compose", "author": "writer",
    "translate": "translate", "summarise": "summarize", "summary": "summarize",
    "cheap": "inexpensive", "price": "cost", "costs": "cost", "fix": "repair", "mend": "repair",
    "weather": "weather", "forecast": "weather", "distance": "far", "km": "kilometer",
}


def _stem(word: str) -> str:
    for suffix, repl in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: len(word) - len(suffix)] + repl
    return word


def content_words(text: str) -> list[str]:
    words = re.findall(r"[a-z0-9]+", text.lower().replace("'s", " ").replace("’s", " "))
    out = []
    for w in words:
        if w in STOP_WORDS:
            continue
        w = SYNONYMS.get(w, w)
        w = SYNONYMS.get(_stem(w), _stem(w))
        out.append(w)
    return out


def semantic_vector(text: str, dims: int = 64, seed: int = 0) -> list[float]:
    """A deterministic unit vector; float32-exact (as the protocol fakes send them)."""
    vec = [0.0] * dims
    for w in content_words(text) or ["<empty>"]:
        h = hashlib.sha256(f"{seed}:{w}".encode()).digest()
        for j in range(2):  # two signed buckets per word: fewer accidental collisions
            i = int.from_bytes(h[4 * j:4 * j + 3], "little") % dims
            vec[i] += 1.0 if h[4 * j + 3] & 1 else -1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [struct.unpack("<f", struct.pack("<f", v / norm))[0] for v in vec]


__all__ = ["semantic_vector", "content_words", "STOP_WORDS", "SYNONYMS"]

"""Backend for the LLVM inference server protocol (as defined by the original system)."""

__version__ = "0.1.0"

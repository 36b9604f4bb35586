"""``care-edge index``: a user's folders -> a collection of their own (walk, extract, chunk, embed, incremental
state, atomic write). Only :mod:`edge.index.gguf` touches llama_cpp, and only when a GGUF encoder is created."""

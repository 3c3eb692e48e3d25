"""Retrieval: the embedder, retrievers (dense FAISS, BM25, hybrid, reranked), chunking and the
fine-tuning of retrieval models."""

from ragft.retrieval.base import Retriever, document_ranking, reciprocal_rank_fusion
from ragft.retrieval.bm25 import BM25Retriever
from ragft.retrieval.dense import DenseRetriever
from ragft.retrieval.embeddings import Embedder, embed_texts
from ragft.retrieval.hybrid import HybridRetriever
from ragft.retrieval.rerank import CrossEncoderReranker, RerankedRetriever

__all__ = [
    "BM25Retriever",
    "CrossEncoderReranker",
    "DenseRetriever",
    "Embedder",
    "HybridRetriever",
    "RerankedRetriever",
    "Retriever",
    "document_ranking",
    "embed_texts",
    "reciprocal_rank_fusion",
]

"""The one settings object. Every field reads from the environment with the prefix ``RAG_``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_LLM_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
DEFAULT_EMBEDDER_DIR = "multilingual-e5-small"


class Settings(BaseSettings):
    """Configuration for ingestion, retrieval, generation and the HTTP service."""

    model_config = SettingsConfigDict(env_prefix="RAG_", frozen=True, extra="ignore")

    # --- locations -------------------------------------------------------------------------------
    corpus_dir: Path = Field(Path("corpus"), description="Folder ingested by default (`rag ingest`).")
    index_dir: Path = Field(Path("index"), description="Folder holding built indexes.")
    index_name: str = Field("default", min_length=1, pattern=r"^[A-Za-z0-9_.-]+$",
                            description="Name of the index under index_dir.")
    models_dir: Path = Field(Path("models"), description="Folder where `rag models` provisions models.")
    prompts_dir: Path = Field(Path(__file__).resolve().parent.parent / "prompts",
                              description="Folder of prompt templates.")
    llm_path: Path | None = Field(None, description="GGUF file to generate with; default: the provisioned "
                                  f"{DEFAULT_LLM_FILE} in models_dir. Any GGUF chat model works.")
    embedder_path: Path | None = Field(None, description="sentence-transformers model directory; default: "
                                       f"the provisioned {DEFAULT_EMBEDDER_DIR} in models_dir.")

    # --- backends ----------------------------------------------------------------------------------
    embed_backend: Literal["sentence-transformers"] = Field(
        "sentence-transformers", description="Embedder implementation.")
    llm_backend: Literal["llama-cpp", "openai"] = Field(
        "llama-cpp", description="Generator implementation: the local GGUF model, or any OpenAI-compatible "
        "server (vLLM, llama.cpp server, Ollama) at llm_base_url.")

    # --- remote LLM (llm_backend=openai) -------------------------------------------------------------
    llm_base_url: str = Field("http://127.0.0.1:8080/v1", min_length=1, pattern=r"^https?://",
                              description="Base URL of the OpenAI-compatible server, up to `/v1`.")
    llm_api_key: str | None = Field(None, description="Sent as `Authorization: Bearer <key>` to the LLM "
                                    "server, when set.")
    llm_model: str | None = Field(None, min_length=1, description="Model name sent to the LLM server; "
                                  "default: the file name of llm_path without `.gguf`.")
    llm_timeout: float = Field(60.0, gt=0, le=3600, description="Seconds the LLM server may take for one "
                               "answer (each wait, and the whole stream); past it, 504.")
    llm_connect_timeout: float = Field(5.0, gt=0, le=600, description="Seconds to wait for a connection to "
                                       "the LLM server; past it, 503.")
    max_parallel_generations: int | None = Field(
        None, ge=1, le=256, description="Answers generated at once; default 1 for llama-cpp (one model in "
        "memory), 4 for openai (a server can batch).")

    # --- chunking ------------------------------------------------------------------------------------
    chunk_max_chars: int = Field(360, ge=50, le=4000, description="Longest chunk, in clean characters.")
    chunk_min_chars: int = Field(80, ge=0, le=1000, description="Shorter sections merge with a neighbour.")

    # --- index -----------------------------------------------------------------------------------------
    vector_backend: Literal["faiss", "qdrant"] = Field(
        "faiss", description="Vector index engine (the manifest records it; an index opens only with the one "
        "that built it): embedded FAISS, or Qdrant (a server at qdrant_url, else local mode under the index).")
    qdrant_url: str | None = Field(None, pattern=r"^https?://", description="Qdrant server or cluster for "
                                   "vector_backend=qdrant; unset: qdrant-client's local mode in index_dir/"
                                   "index_name/qdrant (one process at a time).")
    qdrant_api_key: str | None = Field(None, description="API key of the Qdrant server, when it needs one.")
    faiss_index: Literal["flat", "hnsw"] = Field("flat", description="Exact inner product, or HNSW "
                                                 "(approximate) for large corpora.")
    snapshot_every: int = Field(2000, ge=1, le=10_000_000, description="Chunks added or deleted before the "
                                "in-memory vector and lexical parts are saved again (bounds the changes replayed "
                                "at start).")
    embed_batch_size: int = Field(16, ge=1, le=512, description="Passages embedded per batch.")
    max_upload_bytes: int = Field(1_000_000, ge=1, le=100_000_000, description="Largest document accepted by "
                                  "upload, in bytes; a larger body gets 413 before it is read.")
    max_upload_chunks: int = Field(1000, ge=1, le=1_000_000, description="Largest document accepted by upload, "
                                   "in chunks (embedding runs at about 10 chunks/s on 2 cores); checked before "
                                   "any embedding.")
    upload_queue_size: int = Field(8, ge=0, le=1000, description="Uploads and deletes allowed to wait for the "
                                   "one index writer; more get 503.")
    upload_wait_seconds: float = Field(3.0, ge=0, le=600, description="How long an upload or delete waits for its "
                                       "job: done by then → 201/200, else 202 with the job.")
    lock_timeout: float = Field(600.0, ge=0, le=86400, description="How long a write waits for another process "
                                "(`rag ingest`) holding the index lock, in seconds.")
    max_pages: int = Field(2000, ge=1, le=100_000, description="PDFs with more pages are rejected.")
    max_unpacked_bytes: int = Field(200_000_000, ge=1_000, le=10_000_000_000,
                                    description="A .docx that unpacks to more bytes is rejected (zip bomb).")
    max_ocr_pages: int = Field(50, ge=0, le=100_000, description="Scanned pages (PDF pages without a text "
                               "layer, image frames) read by OCR per document; a document with more is "
                               "rejected before any is read. OCR takes about 20 s a page on 2 busy cores.")

    # --- retrieval -------------------------------------------------------------------------------------
    fusion: Literal["rrf", "weighted"] = Field("rrf", description="How dense and lexical ranks combine.")
    rrf_k: int = Field(60, ge=1, le=1000, description="RRF constant.")
    dense_weight: float = Field(0.5, ge=0, le=1, description="Weight of the dense score in weighted fusion.")
    candidates: int = Field(30, ge=1, le=1000, description="Hits taken from each retriever before fusion.")

    # --- answering ------------------------------------------------------------------------------------
    context_chunks: int = Field(8, ge=1, le=20, description="Retrieved chunks whose sentences compete "
                                "for the prompt.")
    context_max_chars: int = Field(240, ge=40, le=4000, description="Budget of passage characters sent "
                                   "to the model (prompt size is the main cost).")
    context_sentences: int = Field(4, ge=1, le=50, description="Most sentences sent to the model.")
    list_max_chars: int = Field(400, ge=40, le=4000, description="Budget of passage characters for a list "
                                "question: the announcing sentence and the sentences or headings holding the items.")
    list_sentences: int = Field(10, ge=1, le=50, description="Most sentences sent to the model for a list question.")
    min_coverage: float = Field(0.5, ge=0, le=1, description="Refuse when less of the question's content "
                                "is found in the evidence than this.")
    max_tokens: int = Field(80, ge=1, le=2048, description="Default answer length limit, in tokens.")
    temperature: float = Field(0.0, ge=0, le=2, description="Default sampling temperature.")
    n_ctx: int = Field(2048, ge=256, le=32768, description="LLM context window.")
    n_threads: int = Field(2, ge=1, le=256, description="CPU threads for the LLM.")
    max_question_chars: int = Field(2000, ge=10, description="Longest accepted user message.")

    # --- HTTP ------------------------------------------------------------------------------------------
    host: str = Field("127.0.0.1", description="Bind address.")
    port: int = Field(8000, ge=1, le=65535, description="Bind port.")
    api_key: str | None = Field(None, description="When set, requests need `Authorization: Bearer <key>`.")
    max_body_bytes: int = Field(1_000_000, ge=1024, le=100_000_000, description="Largest JSON request body, "
                                "in bytes; a larger one gets 413 before it is read.")
    allowed_hosts: str = Field("127.0.0.1,localhost,::1", description="Comma-separated `Host` names accepted "
                               "(the bind host is always added); `*` accepts any. Guards against DNS rebinding.")
    allowed_origins: str = Field("", description="Comma-separated origins (`http://host:port`) allowed to send "
                                 "POST/DELETE besides the service's own; `*` allows any site.")
    queue_size: int = Field(4, ge=0, le=1000, description="Chat requests allowed to wait for the model; "
                            "more get 503.")

    @property
    def index_path(self) -> Path:
        return self.index_dir / self.index_name

    @property
    def resolved_llm_path(self) -> Path:
        return self.llm_path or self.models_dir / DEFAULT_LLM_FILE

    @property
    def resolved_llm_model(self) -> str:
        return self.llm_model or self.resolved_llm_path.stem

    @property
    def parallel_generations(self) -> int:
        default = 4 if self.llm_backend == "openai" else 1
        return self.max_parallel_generations or default

    @property
    def resolved_embedder_path(self) -> Path:
        return self.embedder_path or self.models_dir / DEFAULT_EMBEDDER_DIR

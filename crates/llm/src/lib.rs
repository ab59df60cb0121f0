//! An OpenAI-compatible Chat Completions client for CodeFlux's agent.
//!
//! - Streaming with tool calls: argument fragments split across chunks, several calls per turn,
//!   usage figures, `[DONE]` with or without a finish reason, servers that ignore `stream`.
//! - Providers as data ([`PROVIDERS`]): OpenRouter (default when OPENROUTER_API_KEY is set),
//!   OpenAI, a local Ollama, or any server through LLM_BASE_URL / LLM_API_KEY / LLM_MODEL.
//! - Retries with exponential backoff and jitter (`backon`) on 429, 5xx, connection errors and
//!   streams cut mid-way, honouring Retry-After; connect and idle-stream timeouts.
//! - Errors classified ([`ErrorKind`]) into sentences a person can act on.
//!
//! The crate reads no environment variables: the server passes [`LlmSettings`] in.

mod client;
mod error;
mod models;
mod provider;
mod stream;
mod whole;
mod wire;

pub use client::{ChatStream, ClientOptions, LlmClient, LlmEvent};
pub use error::{ErrorKind, LlmError};
pub use provider::{
    Endpoint, LlmSettings, NOT_CONFIGURED, OLLAMA, OPENAI, OPENROUTER, PROVIDERS, ProviderSpec,
};
pub use wire::{
    ChatMessage, ChatRequest, Completion, FunctionCall, FunctionSpec, ToolCall, ToolSpec, Usage,
};

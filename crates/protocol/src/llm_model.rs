//! Models a provider offers, and what a message's model calls used.

use serde::{Deserialize, Serialize};

/// One model of the provider, as its `/models` endpoint lists it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ModelInfo {
    pub id: String,
    /// A readable name, when the provider gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free to use (OpenRouter: both prices zero, or a `:free` model). None: unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub free: Option<bool>,
    /// US dollars per million prompt tokens, when the provider says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt_usd_per_mtok: Option<f64>,
    /// US dollars per million completion tokens, when the provider says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_usd_per_mtok: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_length: Option<u64>,
}

/// The answer of `models/list`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct ModelList {
    /// The model runs use when none is chosen (LLM_MODEL or the provider's default).
    pub default_model: String,
    pub provider: String,
    pub models: Vec<ModelInfo>,
    /// Set when the provider's list could not be read (the default model still works).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// Tokens a message's model calls used, as the provider counted them, and their cost.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Default)]
pub struct TokenUsage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    /// US dollars; null when the provider reports no cost and no price is configured.
    pub cost_usd: Option<f64>,
}

impl TokenUsage {
    pub fn add(&mut self, prompt: u64, completion: u64, cost: Option<f64>) {
        self.prompt_tokens += prompt;
        self.completion_tokens += completion;
        self.cost_usd = match (self.cost_usd, cost) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
    }

    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
}

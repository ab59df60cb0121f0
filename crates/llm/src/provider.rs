//! Model providers as data, and how the operator's settings pick one.

use crate::LlmError;

/// A known OpenAI-compatible provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProviderSpec {
    /// Used in LLM_PROVIDER and logs.
    pub id: &'static str,
    pub name: &'static str,
    pub base_url: &'static str,
    /// The environment variable holding its key (None: no key needed).
    pub key_env: Option<&'static str>,
    pub default_model: &'static str,
}

pub const OPENROUTER: ProviderSpec = ProviderSpec {
    id: "openrouter",
    name: "OpenRouter",
    base_url: "https://openrouter.ai/api/v1",
    key_env: Some("OPENROUTER_API_KEY"),
    default_model: "openai/gpt-oss-120b:free",
};

pub const OPENAI: ProviderSpec = ProviderSpec {
    id: "openai",
    name: "OpenAI",
    base_url: "https://api.openai.com/v1",
    key_env: Some("OPENAI_API_KEY"),
    default_model: "gpt-4.1-mini",
};

pub const OLLAMA: ProviderSpec = ProviderSpec {
    id: "ollama",
    name: "Ollama",
    base_url: "http://127.0.0.1:11434/v1",
    key_env: None,
    default_model: "qwen2.5-coder:7b",
};

/// Every built-in provider, in the order they are tried when only keys are given.
pub const PROVIDERS: [ProviderSpec; 3] = [OPENROUTER, OPENAI, OLLAMA];

/// What the operator configured (the server reads these from the environment once).
#[derive(Clone, Debug, Default)]
pub struct LlmSettings {
    /// LLM_BASE_URL: any OpenAI-compatible server; overrides the provider's address.
    pub base_url: Option<String>,
    /// LLM_API_KEY: overrides the provider's key.
    pub api_key: Option<String>,
    /// LLM_MODEL: overrides the provider's default model.
    pub model: Option<String>,
    /// LLM_PROVIDER: openrouter, openai or ollama (optional).
    pub provider: Option<String>,
    /// OPENROUTER_API_KEY.
    pub openrouter_api_key: Option<String>,
    /// OPENAI_API_KEY.
    pub openai_api_key: Option<String>,
}

/// Where requests go: the resolved provider, address, key and model.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub provider: String,
    pub base_url: String,
    pub api_key: Option<String>,
    pub model: String,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint")
            .field("provider", &self.provider)
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("model", &self.model)
            .finish()
    }
}

/// The sentence shown when nothing is configured.
pub const NOT_CONFIGURED: &str = "No model provider is configured, so the agent cannot run. \
Set OPENROUTER_API_KEY (OpenRouter; free models available), or OPENAI_API_KEY (OpenAI), \
or LLM_BASE_URL with LLM_API_KEY and LLM_MODEL for any OpenAI-compatible server \
(for a local Ollama: LLM_PROVIDER=ollama, or LLM_BASE_URL=http://127.0.0.1:11434/v1), \
then restart CodeFlux.";

fn non_empty(v: &Option<String>) -> Option<String> {
    v.as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

impl LlmSettings {
    /// Picks the endpoint: LLM_BASE_URL / LLM_API_KEY / LLM_MODEL override the rest; else
    /// LLM_PROVIDER names one; else the first provider whose key is set.
    pub fn resolve(&self) -> Result<Endpoint, LlmError> {
        let base_url = non_empty(&self.base_url);
        let api_key = non_empty(&self.api_key);
        let model = non_empty(&self.model);
        let key_for = |spec: &ProviderSpec| match spec.key_env {
            Some("OPENROUTER_API_KEY") => non_empty(&self.openrouter_api_key),
            Some("OPENAI_API_KEY") => non_empty(&self.openai_api_key),
            _ => None,
        };
        let named = match non_empty(&self.provider) {
            Some(id) => Some(
                PROVIDERS
                    .iter()
                    .find(|p| p.id.eq_ignore_ascii_case(&id))
                    .ok_or_else(|| {
                        LlmError::not_configured(format!(
                            "LLM_PROVIDER={id} is not a known provider; use one of: {}.",
                            PROVIDERS.map(|p| p.id).join(", ")
                        ))
                    })?,
            ),
            None => None,
        };
        if let Some(base_url) = base_url {
            let spec = named.copied();
            let model = model
                .or_else(|| spec.map(|s| s.default_model.to_owned()))
                .ok_or_else(|| {
                    LlmError::not_configured(
                        "LLM_BASE_URL is set but LLM_MODEL is not: set the model name the server offers.",
                    )
                })?;
            return Ok(Endpoint {
                provider: spec.map_or("custom", |s| s.id).to_owned(),
                base_url: base_url.trim_end_matches('/').to_owned(),
                api_key: api_key.or_else(|| spec.and_then(|s| key_for(&s))),
                model,
            });
        }
        let spec = match named {
            Some(spec) => *spec,
            None => *PROVIDERS
                .iter()
                .find(|p| p.key_env.is_some() && key_for(p).is_some())
                .ok_or_else(|| LlmError::not_configured(NOT_CONFIGURED))?,
        };
        let key = api_key.or_else(|| key_for(&spec));
        if spec.key_env.is_some() && key.is_none() {
            return Err(LlmError::not_configured(format!(
                "LLM_PROVIDER={} needs a key: set {} (or LLM_API_KEY).",
                spec.id,
                spec.key_env.unwrap_or("LLM_API_KEY")
            )));
        }
        Ok(Endpoint {
            provider: spec.id.to_owned(),
            base_url: spec.base_url.to_owned(),
            api_key: key,
            model: model.unwrap_or_else(|| spec.default_model.to_owned()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s() -> LlmSettings {
        LlmSettings::default()
    }

    #[test]
    fn nothing_configured_says_what_to_set() {
        let err = s().resolve().unwrap_err();
        assert_eq!(err.kind, crate::ErrorKind::NotConfigured);
        for var in [
            "OPENROUTER_API_KEY",
            "LLM_BASE_URL",
            "LLM_API_KEY",
            "LLM_MODEL",
        ] {
            assert!(err.message.contains(var), "{var}: {}", err.message);
        }
    }

    #[test]
    fn openrouter_is_the_default_with_its_key() {
        let e = LlmSettings {
            openrouter_api_key: Some("k".into()),
            openai_api_key: Some("o".into()),
            ..s()
        }
        .resolve()
        .unwrap();
        assert_eq!(e.provider, "openrouter");
        assert_eq!(e.model, "openai/gpt-oss-120b:free");
        assert_eq!(e.api_key.as_deref(), Some("k"));
        let e = LlmSettings {
            openai_api_key: Some("o".into()),
            ..s()
        }
        .resolve()
        .unwrap();
        assert_eq!(e.provider, "openai");
    }

    #[test]
    fn llm_variables_override_everything() {
        let e = LlmSettings {
            base_url: Some("http://127.0.0.1:9/v1/".into()),
            api_key: Some("sk".into()),
            model: Some("m".into()),
            openrouter_api_key: Some("k".into()),
            ..s()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            e,
            Endpoint {
                provider: "custom".into(),
                base_url: "http://127.0.0.1:9/v1".into(),
                api_key: Some("sk".into()),
                model: "m".into()
            }
        );
        assert!(
            !format!("{e:?}").contains("sk"),
            "the key never reaches logs"
        );
        let e = LlmSettings {
            model: Some("big".into()),
            openrouter_api_key: Some("k".into()),
            ..s()
        }
        .resolve()
        .unwrap();
        assert_eq!(
            (e.provider.as_str(), e.model.as_str()),
            ("openrouter", "big")
        );
        let err = LlmSettings {
            base_url: Some("http://x/v1".into()),
            ..s()
        }
        .resolve()
        .unwrap_err();
        assert!(err.message.contains("LLM_MODEL"));
    }

    #[test]
    fn ollama_needs_no_key() {
        let e = LlmSettings {
            provider: Some("ollama".into()),
            ..s()
        }
        .resolve()
        .unwrap();
        assert_eq!(e.base_url, "http://127.0.0.1:11434/v1");
        assert_eq!(e.api_key, None);
        let err = LlmSettings {
            provider: Some("openai".into()),
            ..s()
        }
        .resolve()
        .unwrap_err();
        assert!(err.message.contains("OPENAI_API_KEY"));
        assert!(
            LlmSettings {
                provider: Some("nope".into()),
                ..s()
            }
            .resolve()
            .is_err()
        );
    }
}

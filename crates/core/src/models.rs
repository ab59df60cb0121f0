//! The provider's models: the list the prompt box offers, and the check of a chosen model.

use codeflux_protocol::{AppError, ModelList};

use crate::Services;

/// Longest model id accepted.
const MAX_MODEL_ID: usize = 200;

impl Services {
    /// The provider's models (its `/models`, cached by the client) and the default one. When
    /// the list cannot be read, the default model is listed alone and `problem` says why.
    pub async fn list_models(&self) -> Result<ModelList, AppError> {
        let llm = self
            .runs()
            .llm()
            .map_err(|e| AppError::unavailable(e.message.clone()))?;
        let endpoint = llm.endpoint();
        let (models, problem) = match llm.list_models().await {
            Ok(m) => (m, None),
            Err(e) => {
                tracing::warn!(error = %e.detail, "reading the provider's model list");
                (Vec::new(), Some(e.message))
            }
        };
        Ok(ModelList {
            default_model: endpoint.model.clone(),
            provider: endpoint.provider.clone(),
            models,
            problem,
        })
    }

    /// A model asked for by a request: None for the default; the id if the provider lists
    /// it; "bad input" if it does not. When the provider's list cannot be read, the model is
    /// taken as given (the run then reports the provider's own error).
    pub(crate) async fn check_model(
        &self,
        model: Option<&str>,
    ) -> Result<Option<String>, AppError> {
        let Some(model) = model.map(str::trim).filter(|m| !m.is_empty()) else {
            return Ok(None);
        };
        if model.len() > MAX_MODEL_ID || model.chars().any(char::is_control) {
            return Err(AppError::bad_input(format!(
                "The model name is not valid: at most {MAX_MODEL_ID} characters, no control characters."
            )));
        }
        let Ok(llm) = self.runs().llm() else {
            // No provider: the run fails at once and says what to set.
            return Ok(Some(model.to_owned()));
        };
        if model == llm.endpoint().model {
            return Ok(None);
        }
        match llm.list_models().await {
            Ok(list) if list.iter().any(|m| m.id == model) => Ok(Some(model.to_owned())),
            Ok(_) => Err(AppError::bad_input(format!(
                "Unknown model \"{}\": the provider does not list it. models/list shows the models you can choose.",
                codeflux_protocol::validate::shorten(model, 80)
            ))),
            Err(e) => {
                tracing::warn!(error = %e.detail, model, "cannot check a model against the provider's list; taking it as given");
                Ok(Some(model.to_owned()))
            }
        }
    }
}

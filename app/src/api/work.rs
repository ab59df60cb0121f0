//! The work behind the answers: the provider's models, and each run's steps.

use codeflux_protocol::{ModelList, WorkLog};
use leptos::prelude::*;

use super::ApiError;
#[cfg(feature = "ssr")]
use super::{actor, services};

/// The provider's models (its /models, cached; on OpenRouter with prices and a free flag) and
/// the default model.
#[server(endpoint = "models/list")]
pub async fn list_models() -> Result<ModelList, ApiError> {
    actor()?;
    Ok(services()?.list_models().await?)
}

/// The steps of the project's runs (model text, tool calls, files, commands with their exit
/// codes and output, checks), folded from the stored events; one log per run that wrote an
/// assistant message, oldest first.
#[server(endpoint = "runs/log")]
pub async fn work_logs(#[server(default)] project_id: String) -> Result<Vec<WorkLog>, ApiError> {
    Ok(services()?.work_logs(&actor()?, &project_id).await?)
}

//! The use-cases of CodeFlux, independent of any web framework: what happens when a person
//! creates a project, sends a message or stops a run. The server functions in `app` are thin
//! wrappers around [`Services`].

mod auth;
mod events;
mod metrics;
mod models;
mod runs;
mod seed;
mod worklog;

use std::sync::Arc;

pub use auth::{Actor, Auth, AuthConfig, Session};
/// The agent's limits (re-exported for the server's configuration).
pub use codeflux_agent::AgentConfig;
/// The data layer, for start-up code (connect, migrate, URLs).
pub use codeflux_db as db;
pub use codeflux_db::SignUpPolicy;
use codeflux_db::{Db, DbError, NewProject};
use codeflux_llm::LlmClient;
pub use codeflux_llm::{ClientOptions as LlmClientOptions, LlmSettings};
pub use codeflux_protocol::ErrorKind;
use codeflux_protocol::{
    AppError, Fragment, Message, Project, ProjectView, Run, Template, validate,
};
/// Sandboxes, for start-up code.
pub use codeflux_sandbox as sandbox;
use codeflux_sandbox::{PreviewState, SandboxProvider};
pub use events::{EventBus, EventFeed};
pub use runs::{NodeConfig, RunManager};
pub use seed::seed_samples;

/// Settings of the use-cases, read once at start by the server.
#[derive(Clone, Debug, Default)]
pub struct CoreConfig {
    pub llm: LlmSettings,
    pub llm_options: LlmClientOptions,
    /// Model -> USD per million prompt and completion tokens, for providers that report no
    /// cost (CODEFLUX_MODEL_PRICES).
    pub model_prices: std::collections::HashMap<String, (f64, f64)>,
    pub agent: AgentConfig,
    /// Runs working at the same time across every project.
    pub max_concurrent_runs: usize,
    /// Accounts.
    pub auth: AuthConfig,
    /// This node in the cluster (its id, URL, lease time).
    pub node: NodeConfig,
}

/// Everything a request needs, created once at start and shared.
#[derive(Clone)]
pub struct Services {
    db: Db,
    bus: EventBus,
    runs: RunManager,
    sandboxes: Arc<dyn SandboxProvider>,
    auth: Auth,
    /// Where projects' sandboxes were last seen (preview forwarding), briefly cached.
    homes: Arc<std::sync::Mutex<PreviewHomes>>,
}

type PreviewHomes =
    std::collections::HashMap<uuid::Uuid, (std::time::Instant, Option<(uuid::Uuid, String)>)>;

impl Services {
    /// Must be called inside the tokio runtime (starts the event writer).
    pub fn new(db: Db, sandboxes: Arc<dyn SandboxProvider>, cfg: CoreConfig) -> Self {
        let llm = cfg
            .llm
            .resolve()
            .and_then(|endpoint| LlmClient::new(endpoint, cfg.llm_options.clone()))
            .map(|c| c.with_prices(cfg.model_prices.clone()));
        match &llm {
            Ok(c) => {
                tracing::info!(provider = %c.endpoint().provider, model = %c.endpoint().model, base_url = %c.endpoint().base_url, "model provider")
            }
            Err(e) => tracing::warn!("{}", e.message),
        }
        let bus = EventBus::start(db.clone(), cfg.node.id);
        let runs = RunManager::new(
            db.clone(),
            bus.clone(),
            llm,
            sandboxes.clone(),
            cfg.agent,
            if cfg.max_concurrent_runs == 0 {
                4
            } else {
                cfg.max_concurrent_runs
            },
            cfg.node,
        );
        let auth = Auth::new(db.clone(), cfg.auth);
        Self {
            db,
            bus,
            runs,
            sandboxes,
            auth,
            homes: Arc::default(),
        }
    }

    pub fn auth(&self) -> &Auth {
        &self.auth
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn runs(&self) -> &RunManager {
        &self.runs
    }

    pub fn sandboxes(&self) -> &Arc<dyn SandboxProvider> {
        &self.sandboxes
    }

    /// Why the agent cannot run, if no model provider is configured.
    pub fn llm_problem(&self) -> Option<String> {
        self.runs.llm_problem()
    }

    /// Creates a project from a prompt (a generated name, the prompt as its first USER
    /// message) and starts its first run. An empty `template` means the default one.
    ///
    /// `model` picks one of the provider's models for the run (None or empty: the default);
    /// an unknown model is refused before anything is stored.
    pub async fn create_project(
        &self,
        actor: &Actor,
        prompt: &str,
        template: Option<&str>,
        model: Option<&str>,
    ) -> Result<Project, AppError> {
        let prompt = validate::prompt(prompt)?;
        let template = match template.map(str::trim) {
            None | Some("") => Template::default(),
            Some(name) => name.parse::<Template>()?,
        };
        let model = self.check_model(model).await?;
        let name = generate_name();
        let (project, first) = codeflux_db::create_project(
            &self.db,
            NewProject {
                name,
                template,
                prompt,
                owner_id: actor.user_id(),
            },
        )
        .await
        .map_err(db_error)?;
        tracing::info!(project = %project.id, name = %project.name, template = %template, "project created");
        self.runs.enqueue(project.id, first.id, model).await?;
        Ok(project)
    }

    /// The actor's projects (every project with accounts off), newest first.
    pub async fn list_projects(&self, actor: &Actor) -> Result<Vec<Project>, AppError> {
        codeflux_db::list_projects(&self.db, actor.user_id())
            .await
            .map_err(db_error)
    }

    /// One of the actor's projects by its id (as the client sent it). Someone else's project
    /// is "not found", like one that does not exist.
    pub async fn get_project(&self, actor: &Actor, id: &str) -> Result<Project, AppError> {
        let id = validate::id("project id", id)?;
        codeflux_db::find_project(&self.db, id)
            .await
            .map_err(db_error)?
            .filter(|p| match actor {
                Actor::Local => true,
                Actor::User { id, .. } => p.owner_id == Some(*id),
            })
            .ok_or_else(|| AppError::not_found(format!("There is no project with id {id}.")))
    }

    /// A project's conversation, oldest first.
    pub async fn list_messages(
        &self,
        actor: &Actor,
        project_id: &str,
    ) -> Result<Vec<Message>, AppError> {
        let project = self.get_project(actor, project_id).await?;
        codeflux_db::list_messages(&self.db, project.id)
            .await
            .map_err(db_error)
    }

    /// A follow-up from the person; it runs after the project's current run, if any, with
    /// `model` if given (an unknown model is refused before anything is stored).
    pub async fn create_message(
        &self,
        actor: &Actor,
        project_id: &str,
        content: &str,
        model: Option<&str>,
    ) -> Result<Message, AppError> {
        let content = validate::prompt(content)?;
        let project = self.get_project(actor, project_id).await?;
        let model = self.check_model(model).await?;
        let message = codeflux_db::insert_message(
            &self.db,
            project.id,
            content,
            codeflux_protocol::Role::User,
            codeflux_protocol::MessageKind::Result,
        )
        .await
        .map_err(db_error)?;
        self.runs.enqueue(project.id, message.id, model).await?;
        Ok(message)
    }

    /// Stops the project's run and drops its queued follow-ups; returns how many.
    pub async fn cancel_runs(&self, actor: &Actor, project_id: &str) -> Result<u32, AppError> {
        let project = self.get_project(actor, project_id).await?;
        self.runs.cancel(project.id).await
    }

    /// Deletes a project: stops its runs, removes its sandbox (disk included), then its rows
    /// (conversation, versions, runs, events).
    pub async fn delete_project(&self, actor: &Actor, project_id: &str) -> Result<(), AppError> {
        let project = self.get_project(actor, project_id).await?;
        self.runs.cancel(project.id).await?;
        let t0 = std::time::Instant::now();
        while !self.runs.active(project.id).await?.is_empty() {
            if t0.elapsed() > std::time::Duration::from_secs(30) {
                return Err(AppError::conflict(
                    "The project's run is still stopping; try again in a moment.",
                ));
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        self.sandboxes.delete(project.id).await.map_err(|e| {
            tracing::error!(project = %project.id, "removing the sandbox: {e}");
            AppError::internal("The project's sandbox could not be removed.")
        })?;
        codeflux_db::delete_project(&self.db, project.id)
            .await
            .map_err(db_error)?;
        tracing::info!(project = %project.id, "project deleted");
        Ok(())
    }

    /// The project's queued and running runs.
    pub async fn active_runs(&self, actor: &Actor, project_id: &str) -> Result<Vec<Run>, AppError> {
        let project = self.get_project(actor, project_id).await?;
        self.runs.active(project.id).await
    }

    /// The project page's data: the project, its conversation, its runs still working and where
    /// to follow their events from.
    pub async fn project_view(&self, actor: &Actor, id: &str) -> Result<ProjectView, AppError> {
        let project = self.get_project(actor, id).await?;
        let messages = codeflux_db::list_messages(&self.db, project.id)
            .await
            .map_err(db_error)?;
        let active_runs = self.runs.active(project.id).await?;
        let ids: Vec<uuid::Uuid> = active_runs.iter().map(|r| r.id).collect();
        let resume_from = match codeflux_db::seq_before_runs(&self.db, project.id, &ids)
            .await
            .map_err(db_error)?
        {
            Some(s) => s,
            None => codeflux_db::max_seq(&self.db, project.id)
                .await
                .map_err(db_error)?,
        };
        Ok(ProjectView {
            preview_url: self.sandboxes.preview_url(project.id),
            project,
            messages,
            active_runs,
            resume_from,
        })
    }

    /// One fragment (a version of one of the actor's projects).
    pub async fn fragment(&self, actor: &Actor, id: &str) -> Result<Fragment, AppError> {
        let id = validate::id("version id", id)?;
        let missing = || AppError::not_found(format!("There is no version with id {id}."));
        let fragment = codeflux_db::find_fragment(&self.db, id)
            .await
            .map_err(db_error)?
            .ok_or_else(missing)?;
        let project = codeflux_db::fragment_project(&self.db, fragment.id)
            .await
            .map_err(db_error)?
            .ok_or_else(missing)?;
        self.get_project(actor, &project.to_string())
            .await
            .map_err(|_| missing())?;
        Ok(fragment)
    }

    /// The project's events numbered above `after`, then the live ones.
    pub async fn events(
        &self,
        actor: &Actor,
        project_id: &str,
        after: i64,
    ) -> Result<EventFeed, AppError> {
        let project = self.get_project(actor, project_id).await?;
        Ok(self.bus.feed(project.id, after.max(0)))
    }

    /// Makes sure the project's preview runs (reviving it from the latest version if it was
    /// stopped, restarting its dev server if it had stopped) and says where it stands.
    pub async fn preview(&self, project_id: uuid::Uuid) -> Result<PreviewState, AppError> {
        let state = self.sandboxes.preview_state(project_id);
        if !matches!(state, PreviewState::Stopped | PreviewState::Failed(_)) {
            return Ok(state);
        }
        let project = codeflux_db::find_project(&self.db, project_id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| {
                AppError::not_found(format!("There is no project with id {project_id}."))
            })?;
        let latest = codeflux_db::latest_fragment(&self.db, project_id)
            .await
            .map_err(db_error)?;
        self.runs.hold_sandbox(project_id).await;
        match self
            .sandboxes
            .start_preview(
                project.id,
                project.template,
                latest.as_ref().map(|f| &f.files),
            )
            .await
        {
            Ok(()) => Ok(self.sandboxes.preview_state(project_id)),
            Err(codeflux_sandbox::SandboxError::Busy(why)) => Ok(PreviewState::Busy(why)),
            Err(e) => Err(AppError::unavailable(format!(
                "The preview could not start: {e}"
            ))),
        }
    }

    /// Where a preview request must go when another live node holds the project's sandbox
    /// (its URL, CODEFLUX_NODE_URL); None: served here. Looked up at most once a second per
    /// project.
    pub async fn preview_elsewhere(&self, project_id: uuid::Uuid) -> Option<(uuid::Uuid, String)> {
        const FRESH: std::time::Duration = std::time::Duration::from_secs(1);
        const MAX_CACHED: usize = 4096;
        if let Ok(cache) = self.homes.lock()
            && let Some((at, url)) = cache.get(&project_id)
            && at.elapsed() < FRESH
        {
            return url.clone();
        }
        let url = match self.runs.sandbox_elsewhere(project_id).await {
            Ok(u) => u,
            Err(e) => {
                tracing::warn!(project = %project_id, error = %e.message, "looking up where a preview runs; serving it here");
                None
            }
        };
        if let Ok(mut cache) = self.homes.lock() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(project_id, (std::time::Instant::now(), url.clone()));
        }
        url
    }

    /// Shows a chosen version of the project in its preview. Refused while a run works on the
    /// project (the run owns the files until it ends).
    pub async fn show_version(
        &self,
        actor: &Actor,
        project_id: &str,
        fragment_id: &str,
    ) -> Result<(), AppError> {
        let project = self.get_project(actor, project_id).await?;
        let fragment = self.fragment(actor, fragment_id).await?;
        let owner = codeflux_db::fragment_project(&self.db, fragment.id)
            .await
            .map_err(db_error)?;
        if owner != Some(project.id) {
            return Err(AppError::not_found(
                "That version belongs to another project.",
            ));
        }
        if !self.runs.active(project.id).await?.is_empty() {
            return Err(AppError::conflict(
                "The agent is working on this project; the preview shows its work until it finishes.",
            ));
        }
        // Previews asked of any node come here now.
        self.runs.hold_sandbox(project.id).await;
        self.sandboxes
            .show_files(project.id, project.template, &fragment.files)
            .await
            .map_err(|e| {
                AppError::unavailable(format!("The preview could not switch versions: {e}"))
            })
    }

    /// The project page's public address and its QR code (SVG), to open it on a phone.
    pub async fn share_link(&self, actor: &Actor, id: &str) -> Result<(String, String), AppError> {
        let project = self.get_project(actor, id).await?;
        let url = format!(
            "{}/projects/{}",
            self.auth.config().public_url.trim_end_matches('/'),
            project.id
        );
        let code = qrcode::QrCode::new(url.as_bytes()).map_err(|e| {
            tracing::error!("QR code: {e}");
            AppError::internal("The QR code could not be made.")
        })?;
        let svg = code
            .render::<qrcode::render::svg::Color<'_>>()
            .min_dimensions(200, 200)
            .quiet_zone(true)
            .dark_color(qrcode::render::svg::Color("#000000"))
            .light_color(qrcode::render::svg::Color("#ffffff"))
            .build();
        Ok((url, svg))
    }

    /// Whether the database answers (for /healthz).
    pub async fn health(&self) -> Result<(), AppError> {
        codeflux_db::ping(&self.db).await.map_err(db_error)
    }
}

/// A readable project name such as "golden-otter".
pub fn generate_name() -> String {
    petname::petname(2, "-").unwrap_or_else(|| {
        format!(
            "project-{}",
            &codeflux_db::new_id().simple().to_string()[..8]
        )
    })
}

/// Turns a data-layer failure into what the caller may see; the details go to the log.
pub(crate) fn db_error(err: DbError) -> AppError {
    match &err {
        DbError::Unreachable(_) => {
            tracing::error!(error = %err, "database unreachable");
            AppError::unavailable("The database is not reachable right now. Try again in a moment.")
        }
        DbError::Query(_) | DbError::Corrupt(_) => {
            tracing::error!(error = %err, "database error");
            AppError::internal(
                "Something went wrong on our side while reading or saving data. It has been logged.",
            )
        }
        DbError::Fenced => {
            tracing::info!(error = %err, "a write of a run this node no longer holds");
            AppError::conflict("Another server works on this run now.")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::generate_name;

    #[test]
    fn names_are_readable_slugs() {
        let name = generate_name();
        assert_eq!(name.split('-').count(), 2, "{name}");
        assert!(
            name.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
            "{name}"
        );
    }
}

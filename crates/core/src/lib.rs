//! The use-cases of CodeFlux, independent of any web framework: what happens when a person
//! creates a project or sends a message. The server functions in `app` are thin wrappers
//! around [`Services`].

mod seed;

/// The data layer, for start-up code (connect, migrate, URLs).
pub use codeflux_db as db;

use codeflux_db::{Db, DbError, NewProject};
use codeflux_protocol::{AppError, Message, MessageKind, Project, Role, Template, validate};

/// Everything a request needs, created once at start and shared.
#[derive(Clone)]
pub struct Services {
    db: Db,
}

impl Services {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Creates a project from a prompt: a generated name, and the prompt as its first USER
    /// message. An empty `template` means the default one.
    pub async fn create_project(
        &self,
        prompt: &str,
        template: Option<&str>,
    ) -> Result<Project, AppError> {
        let prompt = validate::prompt(prompt)?;
        let template = match template.map(str::trim) {
            None | Some("") => Template::default(),
            Some(name) => name.parse::<Template>()?,
        };
        let name = generate_name();
        let (project, _first) = codeflux_db::create_project(
            &self.db,
            NewProject {
                name,
                template,
                prompt,
            },
        )
        .await
        .map_err(db_error)?;
        tracing::info!(project = %project.id, name = %project.name, template = %template, "project created");
        Ok(project)
    }

    /// Every project, newest first.
    pub async fn list_projects(&self) -> Result<Vec<Project>, AppError> {
        codeflux_db::list_projects(&self.db).await.map_err(db_error)
    }

    /// One project by its id (as the client sent it).
    pub async fn get_project(&self, id: &str) -> Result<Project, AppError> {
        let id = validate::id("project id", id)?;
        codeflux_db::find_project(&self.db, id)
            .await
            .map_err(db_error)?
            .ok_or_else(|| AppError::not_found(format!("There is no project with id {id}.")))
    }

    /// A project's conversation, oldest first.
    pub async fn list_messages(&self, project_id: &str) -> Result<Vec<Message>, AppError> {
        let project = self.get_project(project_id).await?;
        codeflux_db::list_messages(&self.db, project.id)
            .await
            .map_err(db_error)
    }

    /// A follow-up from the person.
    pub async fn create_message(
        &self,
        project_id: &str,
        content: &str,
    ) -> Result<Message, AppError> {
        let content = validate::prompt(content)?;
        let project = self.get_project(project_id).await?;
        codeflux_db::insert_message(
            &self.db,
            project.id,
            content,
            Role::User,
            MessageKind::Result,
        )
        .await
        .map_err(db_error)
    }

    /// Whether the database answers (for /healthz).
    pub async fn health(&self) -> Result<(), AppError> {
        codeflux_db::ping(&self.db).await.map_err(db_error)
    }
}

/// A readable project name such as "brave-golden-otter".
pub fn generate_name() -> String {
    petname::petname(2, "-").unwrap_or_else(|| {
        format!(
            "project-{}",
            &codeflux_db::new_id().simple().to_string()[..8]
        )
    })
}

/// Turns a data-layer failure into what the caller may see; the details go to the log.
fn db_error(err: DbError) -> AppError {
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

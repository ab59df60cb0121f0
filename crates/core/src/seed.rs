//! Sample data for a new installation (`codeflux seed`), as the original product's seed script.

use std::collections::BTreeMap;

use codeflux_db::{Db, NewFragment, NewProject};
use codeflux_protocol::{AppError, MessageKind, Role, Template};

use crate::{db_error, generate_name};

struct Sample {
    prompt: &'static str,
    template: Template,
    reply: &'static str,
    title: &'static str,
    app: &'static str,
}

const SAMPLES: [Sample; 2] = [
    Sample {
        prompt: "Build a habit tracker with dark mode",
        template: Template::ViteReact,
        reply: "Your habit tracker is ready: add habits, tick them off each day and watch the streaks grow. Dark mode follows your system.",
        title: "Habit Tracker",
        app: "import { useState } from \"react\";\n\nexport default function App() {\n  const [habits, setHabits] = useState([\"Read 20 pages\", \"Walk 5k steps\"]);\n  return (\n    <main className=\"min-h-screen bg-white p-8 dark:bg-zinc-900 dark:text-white\">\n      <h1 className=\"text-2xl font-semibold\">Habits</h1>\n      <ul className=\"mt-4 space-y-2\">\n        {habits.map((h) => (<li key={h}>{h}</li>))}\n      </ul>\n      <button className=\"mt-4 rounded bg-indigo-600 px-3 py-1 text-white\" onClick={() => setHabits([...habits, \"New habit\"])}>Add</button>\n    </main>\n  );\n}\n",
    },
    Sample {
        prompt: "A landing page for a coffee roastery with a menu and opening hours",
        template: Template::NextJs,
        reply: "Here is a landing page with a hero, the menu and your opening hours.",
        title: "Roastery Landing",
        app: "export default function Page() {\n  return (\n    <main className=\"p-8\">\n      <h1 className=\"text-4xl font-bold\">Ember & Bean</h1>\n      <p className=\"mt-2\">Small-batch coffee, roasted daily.</p>\n    </main>\n  );\n}\n",
    },
];

/// Creates the sample projects, each with a prompt, a reply and a fragment, plus a follow-up
/// that failed. Returns how many projects were created.
pub async fn seed_samples(db: &Db) -> Result<usize, AppError> {
    for s in &SAMPLES {
        let (project, _) = codeflux_db::create_project(
            db,
            NewProject {
                name: generate_name(),
                template: s.template,
                prompt: s.prompt.to_owned(),
                owner_id: None,
            },
        )
        .await
        .map_err(db_error)?;
        let path = match s.template {
            Template::ViteReact => "src/App.tsx",
            Template::NextJs => "app/page.tsx",
        };
        let files = BTreeMap::from([(path.to_owned(), s.app.to_owned())]);
        codeflux_db::insert_result(
            db,
            project.id,
            s.reply.to_owned(),
            NewFragment {
                sandbox_url: String::new(),
                title: s.title.to_owned(),
                files,
            },
            codeflux_db::MessageMeta::default(),
        )
        .await
        .map_err(db_error)?;
        codeflux_db::insert_message(
            db,
            project.id,
            "Add a weekly overview".to_owned(),
            Role::User,
            MessageKind::Result,
        )
        .await
        .map_err(db_error)?;
        codeflux_db::insert_message(
            db,
            project.id,
            "The model provider did not answer (sample error).".to_owned(),
            Role::Assistant,
            MessageKind::Error,
        )
        .await
        .map_err(db_error)?;
    }
    Ok(SAMPLES.len())
}

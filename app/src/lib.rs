//! The CodeFlux web app: one Leptos component tree rendered on the server (feature `ssr`) and
//! hydrated in the browser (feature `hydrate`), plus the server functions it calls.

// Leptos views are deeply nested types; the default limit (128) is too low for the workspace page.
#![recursion_limit = "256"]

pub mod api;
mod components;
#[cfg(feature = "ssr")]
mod highlight;
mod live;
#[cfg(feature = "ssr")]
mod markdown;
mod model_picker;
mod pages;
mod time;

use leptos::prelude::*;
use leptos_meta::{MetaTags, Title, provide_meta_context};
use leptos_router::{
    SsrMode,
    components::{Route, Router, Routes},
    path,
};

use crate::pages::{
    auth::{SignInPage, SignUpPage},
    home::HomePage,
    not_found::NotFound,
    project::ProjectPage,
    settings::SettingsPage,
};

/// The client's address, put into each request by the server (for sign-in rate limits).
#[cfg(feature = "ssr")]
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub std::net::IpAddr);

/// The value of cookie `name` in a request's headers.
#[cfg(feature = "ssr")]
pub fn cookie_value(headers: &http::HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().to_owned())
}

/// Sets the theme class before the first paint, so a dark page never flashes white.
const THEME_BOOT: &str = r#"(function(){try{var t=localStorage.getItem('cf-theme');var d=t==='dark'||(t!=='light'&&matchMedia('(prefers-color-scheme: dark)').matches);document.documentElement.classList.toggle('dark',d);}catch(e){}})();"#;

/// The HTML document around the app (server side only).
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover, interactive-widget=resizes-content" />
                <meta name="color-scheme" content="light dark" />
                <meta name="theme-color" content="#fafafa" media="(prefers-color-scheme: light)" />
                <meta name="theme-color" content="#09090b" media="(prefers-color-scheme: dark)" />
                <link rel="icon" type="image/svg+xml" href="/favicon.svg" />
                <link rel="manifest" href="/manifest.webmanifest" />
                <link rel="apple-touch-icon" href="/icon-192.png" />
                <meta name="mobile-web-app-capable" content="yes" />
                <meta name="apple-mobile-web-app-title" content="CodeFlux" />
                <script>{THEME_BOOT}</script>
                <link rel="stylesheet" href="/pkg/app.css" />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body class="min-h-dvh bg-zinc-50 text-zinc-900 antialiased dark:bg-zinc-950 dark:text-zinc-100">
                <App />
            </body>
        </html>
    }
}

/// The root component: routes and app-wide context.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    time::provide_clock();

    // A marker the browser tests (and curious people) can read: set once hydration has run.
    Effect::new(|_| {
        #[cfg(feature = "hydrate")]
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });

    view! {
        <Title formatter=|title: String| {
            if title.is_empty() { "CodeFlux".to_owned() } else { format!("{title} · CodeFlux") }
        } />
        <Router>
            <Routes fallback=|| view! { <NotFound /> }>
                <Route path=path!("/") view=HomePage />
                <Route path=path!("/sign-in") view=SignInPage />
                <Route path=path!("/sign-up") view=SignUpPage />
                <Route path=path!("/settings") view=SettingsPage />
                // Async: the page is rendered once its data is loaded, so a missing project
                // answers 404 (a streamed page has sent its status before it knows).
                <Route path=path!("/projects/:id") view=ProjectPage ssr=SsrMode::Async />
            </Routes>
        </Router>
    }
}

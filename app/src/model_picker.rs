//! The model picker beside the prompt boxes: the provider's models (loaded after the page
//! starts), with their price or a free mark; empty means the server's default model.

use codeflux_protocol::{ModelInfo, ModelList};
use leptos::prelude::*;

use crate::api::{ApiError, list_models};

/// "$3 / $15 per M tokens", "free", or nothing when unknown.
fn price_label(m: &ModelInfo) -> String {
    if m.free == Some(true) {
        return "free".into();
    }
    match (m.prompt_usd_per_mtok, m.completion_usd_per_mtok) {
        (Some(p), Some(c)) => format!("${} / ${} per M", short_price(p), short_price(c)),
        _ => String::new(),
    }
}

fn short_price(v: f64) -> String {
    if v >= 10.0 {
        format!("{v:.0}")
    } else if v >= 1.0 {
        format!("{v:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned()
    }
}

/// A `<select name="model">` bound to `model` (posted with a plain form too).
#[component]
pub fn ModelPicker(model: RwSignal<String>) -> impl IntoView {
    // Loaded in the browser once the page runs (an effect never runs on the server): a
    // resource here would hold the server-rendered page's Suspense open.
    let list: RwSignal<Option<Result<ModelList, ApiError>>> = RwSignal::new(None);
    Effect::new(move |_| {
        leptos::task::spawn_local(async move {
            let got = list_models().await;
            list.set(Some(got));
        });
    });
    let options = move || {
        let Some(Ok(list)) = list.get() else {
            return Vec::new();
        };
        let default = list.default_model.clone();
        list.models
            .into_iter()
            .filter(|m| m.id != default)
            .map(|m| {
                let price = price_label(&m);
                let label = if price.is_empty() {
                    m.id.clone()
                } else {
                    format!("{} · {price}", m.id)
                };
                (m.id, label)
            })
            .collect::<Vec<_>>()
    };
    let default_label = move || match list.get() {
        Some(Ok(l)) => format!("Model: {} (default)", l.default_model),
        _ => "Model: default".to_owned(),
    };
    let title = move || match list.get() {
        Some(Ok(l)) => l
            .problem
            .map(|p| format!("The provider's model list could not be read: {p}"))
            .unwrap_or_else(|| format!("{} models from {}", l.models.len(), l.provider)),
        Some(Err(e)) => e.message().to_owned(),
        None => String::new(),
    };
    view! {
        <label class="min-w-28 max-w-full flex-1 sm:max-w-64 sm:flex-none">
            <span class="sr-only">"Model"</span>
            <select
                name="model"
                title=title
                aria-label="Model"
                on:change:target=move |ev| model.set(ev.target().value())
                prop:value=move || model.get()
                class="h-11 w-full min-w-0 truncate rounded-lg border border-zinc-200 bg-white px-2 text-xs text-zinc-600 sm:h-8 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 dark:border-zinc-700 dark:bg-zinc-900 dark:text-zinc-300"
            >
                <option value="">{default_label}</option>
                {move || options().into_iter().map(|(id, label)| view! {
                    <option value=id.clone() selected=move || model.get() == id>{label}</option>
                }).collect_view()}
            </select>
        </label>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_read_well() {
        let m = |p, c, free| ModelInfo {
            id: "x".into(),
            name: None,
            free,
            prompt_usd_per_mtok: p,
            completion_usd_per_mtok: c,
            context_length: None,
        };
        assert_eq!(
            price_label(&m(Some(3.0), Some(15.0), Some(false))),
            "$3 / $15 per M"
        );
        assert_eq!(
            price_label(&m(Some(0.15), Some(0.6), Some(false))),
            "$0.15 / $0.6 per M"
        );
        assert_eq!(price_label(&m(Some(0.0), Some(0.0), Some(true))), "free");
        assert_eq!(price_label(&m(None, None, None)), "");
    }
}

//! Settings: the account, signing out (here or everywhere), API tokens, and invites for admins.

use codeflux_protocol::{Account, ApiToken, Invite};
use leptos::prelude::*;
use leptos_meta::Title;

use crate::api::{
    CreateInvite, CreateToken, RevokeInvite, RevokeToken, SignOut, list_invites, list_tokens, me,
};
use crate::components::{Brand, ErrorNote, TopBar};
use crate::pages::auth::{BUTTON, INPUT, LABEL};

const SECTION: &str = "mt-6 rounded-2xl border border-zinc-200 bg-white p-4 sm:p-6 dark:border-zinc-800 dark:bg-zinc-900";
const H2: &str = "text-base font-semibold";
const SMALL_BUTTON: &str = "inline-flex min-h-11 items-center justify-center rounded-xl border border-zinc-300 px-3 text-sm font-medium hover:bg-zinc-100 focus-visible:outline-none focus-visible:ring-2 focus-visible:ring-indigo-500 dark:border-zinc-700 dark:hover:bg-zinc-800";

fn date(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

#[component]
pub fn SettingsPage() -> impl IntoView {
    let account = Resource::new(|| (), |_| async { me().await });
    view! {
        <Title text="Settings" />
        <TopBar>
            <Brand />
        </TopBar>
        <main class="mx-auto w-full max-w-2xl px-4 pt-8 pb-16 sm:px-6">
            <h1 class="text-2xl font-semibold tracking-tight">"Settings"</h1>
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match account.await {
                        Ok(a) if !a.auth => view! {
                            <section class=SECTION>
                                <h2 class=H2>"Accounts are off"</h2>
                                <p class="mt-2 text-sm text-zinc-500 dark:text-zinc-400">
                                    "This server runs for one person on this machine (CODEFLUX_AUTH=off). Remove that setting to have accounts, invites and API tokens."
                                </p>
                            </section>
                        }.into_any(),
                        Ok(a) => view! { <Signed account=a /> }.into_any(),
                        Err(e) => view! { <div class="mt-6"><ErrorNote message=e.message().to_owned() /></div> }.into_any(),
                    }
                })}
            </Suspense>
        </main>
    }
}

#[component]
fn Signed(account: Account) -> impl IntoView {
    let is_admin = account.is_admin;
    view! {
        <AccountSection account />
        <TokensSection />
        {is_admin.then(|| view! { <InvitesSection /> })}
    }
}

#[component]
fn AccountSection(account: Account) -> impl IntoView {
    let sign_out = ServerAction::<SignOut>::new();
    Effect::new(move |_| {
        if let Some(Ok(_)) = sign_out.value().get() {
            #[cfg(feature = "hydrate")]
            if let Err(e) = window().location().set_href("/sign-in") {
                leptos::logging::warn!("navigation failed: {e:?}");
            }
        }
    });
    view! {
        <section class=SECTION aria-labelledby="account-h">
            <h2 id="account-h" class=H2>"Account"</h2>
            <dl class="mt-3 grid grid-cols-[auto_1fr] gap-x-4 gap-y-1 text-sm">
                <dt class="text-zinc-500 dark:text-zinc-400">"Email"</dt>
                <dd class="min-w-0 wrap-anywhere" data-testid="account-email">{account.email.clone().unwrap_or_default()}</dd>
                <dt class="text-zinc-500 dark:text-zinc-400">"Role"</dt>
                <dd>{if account.is_admin { "Admin" } else { "Member" }}</dd>
                {account.created_at.map(|t| view! {
                    <dt class="text-zinc-500 dark:text-zinc-400">"Since"</dt>
                    <dd>{date(t)}</dd>
                })}
            </dl>
            <div class="mt-4 flex flex-wrap gap-2">
                <button class=SMALL_BUTTON type="button" on:click=move |_| { sign_out.dispatch(SignOut { everywhere: String::new() }); }>
                    "Sign out"
                </button>
                <button class=SMALL_BUTTON type="button" title="Ends every session of this account, on every device" on:click=move |_| { sign_out.dispatch(SignOut { everywhere: "true".into() }); }>
                    "Sign out everywhere"
                </button>
            </div>
        </section>
    }
}

#[component]
fn TokensSection() -> impl IntoView {
    let create = ServerAction::<CreateToken>::new();
    let revoke = ServerAction::<RevokeToken>::new();
    let name = RwSignal::new(String::new());
    let tokens = Resource::new(
        move || (create.version().get(), revoke.version().get()),
        |_| async { list_tokens().await },
    );
    let created = move || {
        match create.value().get() {
        Some(Ok(t)) => Some(view! {
            <div role="status" class="mt-4 rounded-xl border border-emerald-300 bg-emerald-50 p-3 text-sm dark:border-emerald-800 dark:bg-emerald-950/40">
                <p class="font-medium">"Token \u{201c}" {t.name.clone()} "\u{201d} created. Copy it now: it is not shown again."</p>
                <code data-testid="new-token" class="mt-2 block select-all rounded-lg bg-white px-2 py-2 font-mono text-xs break-all dark:bg-zinc-950">{t.token.clone()}</code>
                <p class="mt-2 text-xs text-zinc-500 dark:text-zinc-400">"Use it as: Authorization: Bearer <token>"</p>
            </div>
        }.into_any()),
        Some(Err(e)) => Some(view! { <div class="mt-4"><ErrorNote message=e.message().to_owned() /></div> }.into_any()),
        None => None,
    }
    };
    view! {
        <section class=SECTION aria-labelledby="tokens-h">
            <h2 id="tokens-h" class=H2>"API tokens"</h2>
            <p class="mt-1 text-sm text-zinc-500 dark:text-zinc-400">"For scripts: every /api endpoint and the event stream accept them."</p>
            <form class="mt-4 flex flex-col gap-2 sm:flex-row sm:items-end" on:submit=move |ev| {
                ev.prevent_default();
                create.dispatch(CreateToken { name: name.get_untracked() });
                name.set(String::new());
            }>
                <label class=format!("{LABEL} grow")>
                    "Name"
                    <input class=INPUT type="text" name="name" required maxlength="60" placeholder="deploy script" bind:value=name />
                </label>
                <button class=format!("{BUTTON} sm:w-auto") type="submit">"Create token"</button>
            </form>
            {created}
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match tokens.await {
                        Ok(list) => view! { <TokenList list revoke /> }.into_any(),
                        Err(e) => view! { <div class="mt-4"><ErrorNote message=e.message().to_owned() /></div> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn TokenList(list: Vec<ApiToken>, revoke: ServerAction<RevokeToken>) -> impl IntoView {
    if list.is_empty() {
        return view! { <p class="mt-4 text-sm text-zinc-500 dark:text-zinc-400">"No tokens yet."</p> }.into_any();
    }
    view! {
        <ul class="mt-4 divide-y divide-zinc-200 dark:divide-zinc-800">
            {list.into_iter().map(|t| {
                let id = t.id.to_string();
                view! {
                    <li class="flex items-center gap-3 py-2">
                        <div class="min-w-0 grow">
                            <p class="truncate font-medium">{t.name}</p>
                            <p class="text-xs text-zinc-500 dark:text-zinc-400">
                                <code>{t.prefix} "…"</code> " · created " {date(t.created_at)}
                                {t.last_used_at.map(|u| format!(" · last used {}", date(u)))}
                            </p>
                        </div>
                        <button class=SMALL_BUTTON type="button" on:click=move |_| { revoke.dispatch(RevokeToken { id: id.clone() }); }>
                            "Revoke"
                        </button>
                    </li>
                }
            }).collect_view()}
        </ul>
    }
    .into_any()
}

#[component]
fn InvitesSection() -> impl IntoView {
    let create = ServerAction::<CreateInvite>::new();
    let revoke = ServerAction::<RevokeInvite>::new();
    let email = RwSignal::new(String::new());
    let invites = Resource::new(
        move || (create.version().get(), revoke.version().get()),
        |_| async { list_invites().await },
    );
    let created = move || {
        match create.value().get() {
        Some(Ok(i)) => Some(view! {
            <div role="status" class="mt-4 rounded-xl border border-emerald-300 bg-emerald-50 p-3 text-sm dark:border-emerald-800 dark:bg-emerald-950/40">
                <p class="font-medium">"Invite link (works once, for 7 days):"</p>
                <code data-testid="new-invite" class="mt-2 block select-all rounded-lg bg-white px-2 py-2 font-mono text-xs break-all dark:bg-zinc-950">{i.url.clone().unwrap_or_default()}</code>
            </div>
        }.into_any()),
        Some(Err(e)) => Some(view! { <div class="mt-4"><ErrorNote message=e.message().to_owned() /></div> }.into_any()),
        None => None,
    }
    };
    view! {
        <section class=SECTION aria-labelledby="invites-h">
            <h2 id="invites-h" class=H2>"Invites"</h2>
            <p class="mt-1 text-sm text-zinc-500 dark:text-zinc-400">"A single-use link for someone to create an account."</p>
            <form class="mt-4 flex flex-col gap-2 sm:flex-row sm:items-end" on:submit=move |ev| {
                ev.prevent_default();
                create.dispatch(CreateInvite { email: email.get_untracked() });
                email.set(String::new());
            }>
                <label class=format!("{LABEL} grow")>
                    "For (optional)"
                    <input class=INPUT type="email" name="email" placeholder="colleague@example.com" bind:value=email />
                </label>
                <button class=format!("{BUTTON} sm:w-auto") type="submit">"Create invite"</button>
            </form>
            {created}
            <Suspense fallback=|| ()>
                {move || Suspend::new(async move {
                    match invites.await {
                        Ok(list) => view! { <InviteList list revoke /> }.into_any(),
                        Err(e) => view! { <div class="mt-4"><ErrorNote message=e.message().to_owned() /></div> }.into_any(),
                    }
                })}
            </Suspense>
        </section>
    }
}

#[component]
fn InviteList(list: Vec<Invite>, revoke: ServerAction<RevokeInvite>) -> impl IntoView {
    if list.is_empty() {
        return view! { <p class="mt-4 text-sm text-zinc-500 dark:text-zinc-400">"No invites yet."</p> }.into_any();
    }
    view! {
        <ul class="mt-4 divide-y divide-zinc-200 dark:divide-zinc-800">
            {list.into_iter().map(|i| {
                let id = i.id.to_string();
                let state = match i.used_at {
                    Some(u) => format!("used {}", date(u)),
                    None => format!("open until {}", date(i.expires_at)),
                };
                let open = i.used_at.is_none();
                view! {
                    <li class="flex items-center gap-3 py-2">
                        <div class="min-w-0 grow">
                            <p class="truncate font-medium">{i.email.unwrap_or_else(|| "Anyone with the link".into())}</p>
                            <p class="text-xs text-zinc-500 dark:text-zinc-400">{state}</p>
                        </div>
                        {open.then(|| view! {
                            <button class=SMALL_BUTTON type="button" on:click=move |_| { revoke.dispatch(RevokeInvite { id: id.clone() }); }>
                                "Withdraw"
                            </button>
                        })}
                    </li>
                }
            }).collect_view()}
        </ul>
    }.into_any()
}

//! `strata keys`: API keys, straight in the store.

use std::process::ExitCode;

use anyhow::Context as _;

use super::KeysCommand;
use super::serve::runtime;

/// Runs a `strata keys` command.
pub(super) fn command(command: KeysCommand) -> anyhow::Result<ExitCode> {
    match command {
        KeysCommand::Create {
            backends,
            namespace,
            admin,
            publish,
            name,
        } => runtime()?.block_on(async {
            let (store, ..) = crate::serve::open_store(&backends.config().store).await?;
            let store = store.as_ref();
            crate::serve::bootstrap(store, None).await?;
            let namespace_id = if admin {
                None
            } else {
                let ns = store.namespace(&namespace).await?.with_context(|| {
                    format!("no namespace `{namespace}` in {}", store.describe())
                })?;
                Some(ns.namespace_id)
            };
            let mut key = crate::store::ApiKey::new(name, admin, namespace_id);
            key.publish = publish;
            let (key, secret) = crate::keys::create(store, key).await?;
            eprintln!("created key {}", key.key_id);
            println!("{secret}");
            Ok(ExitCode::SUCCESS)
        }),
        KeysCommand::List { backends, json } => runtime()?.block_on(async {
            let (store, ..) = crate::serve::open_store(&backends.config().store).await?;
            let keys = crate::keys::all(store.as_ref()).await?;
            if json {
                for key in &keys {
                    println!("{}", serde_json::to_string(key)?);
                }
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "{:<32}  {:<14}  {:<20}  {:<24}  {:<24}  NAME",
                "ID", "RIGHTS", "NAMESPACE", "CREATED", "LAST USED"
            );
            for key in &keys {
                let rights = match (key.admin, key.publish) {
                    (true, _) => "admin",
                    (false, true) => "publish",
                    (false, false) => "-",
                };
                let namespace = match &key.namespace_id {
                    Some(id) => store
                        .namespace(id)
                        .await?
                        .map_or_else(|| id.to_string(), |ns| ns.name),
                    None => "(all)".to_owned(),
                };
                println!(
                    "{:<32}  {rights:<14}  {namespace:<20}  {:<24}  {:<24}  {}",
                    key.key_id,
                    key.created_at,
                    key.last_used_at
                        .map_or_else(|| "never".to_owned(), |t| t.to_string()),
                    key.name.as_deref().unwrap_or("")
                );
            }
            Ok(ExitCode::SUCCESS)
        }),
        KeysCommand::Revoke { backends, key_id } => runtime()?.block_on(async {
            let (store, ..) = crate::serve::open_store(&backends.config().store).await?;
            store
                .delete_key(&key_id)
                .await
                .with_context(|| format!("revoking key `{key_id}`"))?;
            eprintln!("revoked key {key_id}");
            Ok(ExitCode::SUCCESS)
        }),
    }
}

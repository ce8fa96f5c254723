//! Manager methods (nova's managers and drivers): `[services.X.methods.NAME]` exposes an
//! operation of a service over D-Bus `Call`. The driver does the implementation-specific
//! work: `exec` runs a command, `control` forwards a JSON-RPC request over the service's
//! control channel. Its callers are `Call` on the Service and Manager objects
//! (`bus::service::call_method`), after the supervisor confirmed the service is served here,
//! and `method = "…"` health checks, which the supervisor runs only while it is.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::config::{MethodDriver, Service};
use crate::control::{CallError, ControlRegistry, frame};
use crate::error::{CommandError, CommandResult};
use crate::process::command::command;

/// The drivers as the supervisor's `method = "…"` health checks call them (handed to it
/// with [`crate::supervisor::Handle::set_method_caller`]).
pub struct Drivers(pub ControlRegistry);

impl crate::supervisor::MethodCaller for Drivers {
    fn call(
        &self,
        service: String,
        spec: Arc<Service>,
        method: String,
    ) -> Pin<Box<dyn Future<Output = CommandResult<String>> + Send>> {
        let controls = self.0.clone();
        Box::pin(async move { call(&service, &spec, &method, Vec::new(), &controls).await })
    }
}

/// Calls method `method` of service `name` (definition `spec`) with `args`; returns its
/// result text. Both drivers are bounded by the service's `frame_timeout`.
pub async fn call(
    name: &str,
    spec: &Service,
    method: &str,
    args: Vec<String>,
    controls: &ControlRegistry,
) -> CommandResult<String> {
    let driver = spec.methods.get(method).ok_or_else(|| {
        let known: Vec<&str> = spec.methods.keys().map(String::as_str).collect();
        CommandError::NoSuchMethod(format!(
            "service {name:?} has no method {method:?}; it has: {}",
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        ))
    })?;
    match driver {
        MethodDriver::Exec(argv) => exec(name, spec, method, argv, args).await,
        MethodDriver::Control(rpc) => {
            let handle = controls.get(name).ok_or_else(|| {
                CommandError::MethodFailed(format!("service {name:?} has no control channel"))
            })?;
            match handle.call(rpc, args, spec.frame_timeout).await {
                Ok(value) => Ok(frame::result_text(&value)),
                Err(err @ CallError::Timeout { .. }) => Err(CommandError::Timeout(err.to_string())),
                Err(err) => Err(CommandError::MethodFailed(format!(
                    "{name}.{method}: {err}"
                ))),
            }
        }
    }
}

/// Runs `argv` + `args` with the service's environment, user and working directory; its
/// stdout is the result, a non-zero exit fails the call with its stderr.
async fn exec(
    name: &str,
    spec: &Service,
    method: &str,
    argv: &[String],
    args: Vec<String>,
) -> CommandResult<String> {
    let failed = |why: String| CommandError::MethodFailed(format!("{name}.{method}: {why}"));
    let child = command(spec, argv, &args)
        .map_err(failed)?
        .spawn()
        .map_err(|e| failed(format!("cannot run {}: {e}", argv[0])))?;
    let output = tokio::time::timeout(spec.frame_timeout, child.wait_with_output())
        .await
        .map_err(|_| {
            CommandError::Timeout(format!(
                "{name}.{method}: {} did not finish within {:?} (frame_timeout)",
                argv[0], spec.frame_timeout
            ))
        })?
        .map_err(|e| failed(e.to_string()))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(failed(format!(
            "{} failed ({}): {}",
            argv[0],
            output.status,
            stderr.trim()
        )))
    }
}

//! Keeps the federation machine's view of this node's capabilities current: probes the
//! relaying executors' backends and hands each change to the machine (peers learn it from the
//! next heartbeat answer, which reads the same state).

use std::sync::Arc;
use std::time::Duration;

use super::Shared;

pub async fn run(shared: Arc<Shared>) {
    let mut stopped = shared.life.shutdown.subscribe();
    let interval = Duration::from_millis(shared.config().settings.timing.backend_probe_interval_ms);
    let probes = shared.runner.probe_backends(interval);
    tokio::pin!(probes);
    let mut probing = true;
    loop {
        tokio::select! {
            biased;
            _ = stopped.changed() => return,
            () = shared.runner.backends().changed.notified() => {
                let capabilities = shared.runner.capabilities();
                shared.federation().handle_local_capabilities(capabilities);
            }
            () = &mut probes, if probing => probing = false,
        }
    }
}

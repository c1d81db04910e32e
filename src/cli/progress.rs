//! Progress on the terminal for the waits a command cannot avoid (a backup, a restore, a
//! verify, an instance coming up): a spinner with what is happening and for how long, drawn on
//! stderr only when it is a terminal, so scripts and `-o json` get clean output.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::{future::Future, time::Duration};

/// A spinner saying `msg`, ticking until dropped or finished.
pub fn spinner(msg: impl Into<String>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("a static template"),
    );
    bar.set_message(msg.into());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Runs `fut` with a spinner saying `msg`, cleared when it ends.
pub async fn during<T>(msg: impl Into<String>, fut: impl Future<Output = T>) -> T {
    let bar = spinner(msg);
    let out = fut.await;
    bar.finish_and_clear();
    out
}

//! What the jobs actor tells the world about recipe jobs: how a job ended.

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobOutcome {
    /// Its steps ran; `status` is 0, or the exit status of the step that failed.
    Finished { status: i32 },
    /// A step could not be run.
    Failed { error: String },
    /// `CancelJob`: dropped from the queue, or its running step stopped.
    Cancelled,
}

/// A finished job, for the publisher's `JobFinished` / `JobFailed` signals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobReport {
    pub service: String,
    pub id: u64,
    pub recipe: String,
    pub outcome: JobOutcome,
}

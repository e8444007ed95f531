//! Robots' tasks, gathered: the "create a task" actions of runs done at the same moment go to
//! the activities module as one call (one transaction, one insert) instead of one each. A run's
//! action waits a moment for others to join; when the gathered call is refused as a whole,
//! each task is asked for on its own so that one bad task fails only its own run.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use activities_api::{Activities, NewTask, Task};
use kernel::{AppError, AppResult, Caller};
use tokio::sync::oneshot;

/// How long the first task waits for others to join.
const WINDOW: Duration = Duration::from_millis(2);
/// Most tasks in one call.
const MOST: usize = 500;

type Waiting = (Caller, NewTask, oneshot::Sender<AppResult<Task>>);

#[derive(Default)]
struct Queue {
    waiting: Vec<Waiting>,
    /// A drainer is running (it takes what is waiting until nothing is).
    draining: bool,
}

#[derive(Default)]
pub(crate) struct TaskGatherer {
    queue: Arc<Mutex<Queue>>,
}

impl TaskGatherer {
    /// Creates the task (a robot's: the caller carries a cause), with others asked for now.
    pub(crate) async fn create(
        &self,
        activities: &Arc<dyn Activities>,
        caller: Caller,
        new: NewTask,
    ) -> AppResult<Task> {
        if caller.cause.is_none() {
            return activities.create_task(caller, new).await;
        }
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut q = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
            q.waiting.push((caller, new, tx));
            !std::mem::replace(&mut q.draining, true)
        };
        if start {
            // Its own task: a caller that stops waiting leaves the others served.
            tokio::spawn(drain(self.queue.clone(), activities.clone()));
        }
        rx.await
            .map_err(|_| AppError::internal("the gathered task call stopped"))?
    }
}

async fn drain(queue: Arc<Mutex<Queue>>, activities: Arc<dyn Activities>) {
    loop {
        tokio::time::sleep(WINDOW).await;
        let batch: Vec<Waiting> = {
            let mut q = queue.lock().unwrap_or_else(PoisonError::into_inner);
            if q.waiting.is_empty() {
                q.draining = false;
                return;
            }
            let n = q.waiting.len().min(MOST);
            q.waiting.drain(..n).collect()
        };
        let asks: Vec<(Caller, NewTask)> = batch.iter().map(|(c, n, _)| (*c, n.clone())).collect();
        match activities.create_tasks(asks).await {
            Ok(tasks) if tasks.len() == batch.len() => {
                for ((_, _, tx), task) in batch.into_iter().zip(tasks) {
                    let _ = tx.send(Ok(task));
                }
            }
            // One at a time: each gets its own answer.
            _ => {
                for (caller, new, tx) in batch {
                    let _ = tx.send(activities.create_task(caller, new).await);
                }
            }
        }
    }
}

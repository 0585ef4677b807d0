-- The autonomous projection: every task of the core's queue, and where it stands.
CREATE TABLE autonomous_tasks (
    task_id      text             PRIMARY KEY,
    system       text             NOT NULL,
    subject      text             NOT NULL,
    action       text             NOT NULL,
    priority     integer          NOT NULL,
    reason       text             NOT NULL,
    metrics      jsonb            NOT NULL,
    generations  bigint           NOT NULL,
    status       text             NOT NULL,  -- queued, running, succeeded, failed, cancelled
    attempt      bigint           NOT NULL,
    retry_at     timestamptz,
    outcome      text,
    queued_at    timestamptz,
    updated_at   timestamptz,
    position     bigint           NOT NULL
) WITH (fillfactor = 80);
CREATE INDEX autonomous_tasks_status ON autonomous_tasks (status);

-- The autonomous projection: every run of a scheduled job.
CREATE TABLE job_runs (
    key          text             PRIMARY KEY,
    job          text             NOT NULL,
    system       text             NOT NULL,
    due_at       timestamptz,
    started_at   timestamptz,
    finished_at  timestamptz,
    tasks        bigint           NOT NULL,
    outcome      text             NOT NULL,
    position     bigint           NOT NULL
);
CREATE INDEX job_runs_job ON job_runs (job);

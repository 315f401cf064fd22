-- Issue 18: what the platform last wrote into each sync schedule (interval and whether it is the deployed
-- default or a per-connection override), so a deploy can re-time schedules from the listing alone, without
-- describing each one (a query replayed by its scheduler workflow: ~6/s at 10,000 schedules). The schedule
-- action's memo still carries the same two values and stays the authority: a schedule without a row, or whose
-- listed interval differs from its row, is described as before, and that records its row.
CREATE TABLE schedule_intervals (
    schedule_id text PRIMARY KEY,
    interval_s  integer NOT NULL,
    source      text NOT NULL CHECK (source IN ('default', 'override')),
    -- set before the platform pauses the schedule, cleared after it resumes it: a re-timing that finds it set
    -- describes the schedule, so a pause the listing does not show yet is never undone
    held        boolean NOT NULL DEFAULT false,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

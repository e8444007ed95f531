-- Each channel's next free send slot, shared by every process that sends for it: the channel's
-- rate holds across processes, not only within one (each process also paces itself with
-- governor).
CREATE TABLE messaging.channel_pace (
    channel_id bigint PRIMARY KEY REFERENCES messaging.channels (id) ON DELETE CASCADE,
    next_at timestamptz NOT NULL
);

-- The notifier's ledger: one row per (alert, channel) — or per digest, run failure — with what
-- became of it. The primary key is what makes a delivery happen at most once: a row is claimed
-- (status 'sending', committed) before the message leaves, so a re-run, a retry or a second
-- evaluation running at the same time never sends it again.
CREATE TABLE alert_deliveries (
    alert_id        bigint      NOT NULL,
    channel         text        NOT NULL CHECK (channel IN ('slack', 'webhook', 'email')),
    kind            text        NOT NULL CHECK (kind IN ('alert', 'digest', 'run_failure')),
    symbol          text,
    "timestamp"     date,
    p_value         double precision,
    status          text        NOT NULL CHECK (status IN
                        ('pending', 'sending', 'sent', 'failed', 'gave_up', 'suppressed',
                         'withdrawn')),
    reason          text,
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    last_error      text,
    next_attempt_at timestamptz,
    sent_at         timestamptz,
    message         jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (alert_id, channel)
);
CREATE INDEX alert_deliveries_due_idx ON alert_deliveries (channel, kind, status, next_attempt_at);
COMMENT ON TABLE alert_deliveries IS
    'Each alert (digest, run failure) per channel: pending, sending, sent, failed (retried with'
    ' backoff), gave_up, suppressed (quiet mode, threshold, snooze: see reason) or withdrawn (no'
    ' longer an alert).';
COMMENT ON COLUMN alert_deliveries.alert_id IS
    'alerts.id for kind alert; a hash of the session (digest) or of the run id (run_failure).';
COMMENT ON COLUMN alert_deliveries.message IS 'The message as sent (title, lines, payload).';

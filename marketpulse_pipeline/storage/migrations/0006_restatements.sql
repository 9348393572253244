-- When a vendor restates a symbol's history (a split, corrected bars), MarketPulse replaces the
-- stored history and records it here; everything computed from the first changed session on
-- is recomputed (watermarks.valid_through).
CREATE TABLE restatements (
    id              bigserial        PRIMARY KEY,
    symbol          text             NOT NULL,
    first_changed   date             NOT NULL,
    factor          double precision,
    rows_replaced   integer          NOT NULL CHECK (rows_replaced >= 0),
    source          text             NOT NULL,
    run_id          text             NOT NULL,
    detected_at     timestamptz      NOT NULL DEFAULT now()
);
CREATE INDEX restatements_symbol_idx ON restatements (symbol, detected_at DESC);
COMMENT ON TABLE restatements IS
    'Stored history a source restated: the first changed session, the median old/new close ratio'
    ' (4 for a 4:1 split), and how many bars were replaced.';

-- Splits and dividends, as the price source reports them. Stored prices are split-adjusted: a
-- split makes the source restate the history before it (see restatements).
CREATE TABLE corporate_actions (
    symbol      text             NOT NULL,
    "timestamp" date             NOT NULL,
    kind        text             NOT NULL CHECK (kind IN ('split', 'dividend')),
    value       double precision NOT NULL CHECK (value > 0),
    source      text             NOT NULL,
    source_ref  text             NOT NULL,
    created_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, "timestamp", kind)
);
COMMENT ON TABLE corporate_actions IS
    'Splits (value: new shares per old share, 4 for a 4:1 split) and dividends (value: cash per'
    ' share) per symbol and ex-date, from the price source.';
COMMENT ON COLUMN restatements.factor IS
    'Median stored / new close over the sessions compared: a split''s ratio (4 for 4:1).';

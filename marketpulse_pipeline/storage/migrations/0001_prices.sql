-- Raw daily bars, the synthetic source's ground truth, and the quarantine for refused rows.
-- "timestamp" is the NYSE session date: no time of day, so a day is one value everywhere.

CREATE TABLE stock_prices (
    symbol      text             NOT NULL,
    "timestamp" date             NOT NULL,
    open        double precision NOT NULL,
    high        double precision NOT NULL,
    low         double precision NOT NULL,
    close       double precision NOT NULL,
    volume      bigint           NOT NULL,
    source      text             NOT NULL,
    created_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, "timestamp"),
    CONSTRAINT stock_prices_ohlc_consistent
        CHECK (low > 0 AND low <= least(open, close) AND high >= greatest(open, close)),
    CONSTRAINT stock_prices_volume_non_negative CHECK (volume >= 0)
);
CREATE INDEX stock_prices_timestamp_idx ON stock_prices ("timestamp");
COMMENT ON TABLE stock_prices IS 'Validated daily OHLCV bars, one row per symbol and NYSE session.';

CREATE TABLE injected_anomalies (
    symbol      text             NOT NULL,
    "timestamp" date             NOT NULL,
    kind        text             NOT NULL,
    magnitude   double precision NOT NULL,
    duration    integer          NOT NULL DEFAULT 1 CHECK (duration >= 1),
    created_at  timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, "timestamp", kind)
);
CREATE INDEX injected_anomalies_timestamp_idx ON injected_anomalies ("timestamp");
COMMENT ON TABLE injected_anomalies IS
    'Ground truth: anomalies the synthetic source injected (first session, kind, size, sessions it lasts).';

CREATE TABLE rejected_prices (
    symbol      text        NOT NULL,
    "timestamp" date        NOT NULL,
    open        text,
    high        text,
    low         text,
    close       text,
    volume      text,
    source      text        NOT NULL,
    source_ref  text        NOT NULL,
    reason      text        NOT NULL,
    run_id      text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejected_prices_symbol_timestamp_idx ON rejected_prices (symbol, "timestamp");
COMMENT ON TABLE rejected_prices IS
    'Bars the quality gate refused, with their raw values, where they came from and why.';

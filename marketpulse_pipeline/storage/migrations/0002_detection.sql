-- Features, anomalies of every method, their consensus, and how far each asset has processed.

CREATE TABLE price_features (
    symbol            text             NOT NULL,
    "timestamp"       date             NOT NULL,
    return_pct        double precision,
    log_return        double precision,
    volume_change_pct double precision,
    range_pct         double precision,
    gap_pct           double precision,
    sma_20            double precision,
    rsi_14            double precision CHECK (rsi_14 BETWEEN 0 AND 100),
    bb_middle         double precision,
    bb_upper          double precision,
    bb_lower          double precision,
    bb_percent_b      double precision,
    created_at        timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, "timestamp"),
    CHECK (bb_lower <= bb_middle AND bb_middle <= bb_upper)
);
CREATE INDEX price_features_timestamp_idx ON price_features ("timestamp");
COMMENT ON TABLE price_features IS
    'Returns, ranges, SMA(20), RSI(14) and Bollinger(20, 2) per symbol and session; NULL during warm-up.';

CREATE TABLE anomalies (
    id           bigint           PRIMARY KEY,
    symbol       text             NOT NULL,
    "timestamp"  date             NOT NULL,
    anomaly_type text             NOT NULL,
    method       text             NOT NULL,
    score        double precision NOT NULL CHECK (score >= 0),
    severity     double precision NOT NULL CHECK (severity >= 0),
    details      jsonb            NOT NULL,
    created_at   timestamptz      NOT NULL DEFAULT now(),
    UNIQUE (symbol, "timestamp", method, anomaly_type)
);
CREATE INDEX anomalies_method_symbol_timestamp_idx ON anomalies (method, symbol, "timestamp");
CREATE INDEX anomalies_symbol_timestamp_idx ON anomalies (symbol, "timestamp");
CREATE INDEX anomalies_timestamp_idx ON anomalies ("timestamp");
COMMENT ON TABLE anomalies IS
    'Anomalies of every detection method; id is stable across re-materializations.';
COMMENT ON COLUMN anomalies.severity IS
    'Score relative to the method''s flagging threshold: 1 = at the threshold.';

CREATE TABLE anomaly_consensus (
    symbol           text             NOT NULL,
    "timestamp"      date             NOT NULL,
    votes            integer          NOT NULL CHECK (votes >= 1),
    methods          text[]           NOT NULL,
    severity         double precision NOT NULL CHECK (severity >= 0),
    strongest_type   text             NOT NULL,
    strongest_method text             NOT NULL,
    is_consensus     boolean          NOT NULL,
    created_at       timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, "timestamp")
);
CREATE INDEX anomaly_consensus_timestamp_idx ON anomaly_consensus ("timestamp");
COMMENT ON TABLE anomaly_consensus IS
    'One row per symbol and session with at least one anomaly: which methods agree, and how strongly.';

CREATE TABLE watermarks (
    target        text        NOT NULL,
    symbol        text        NOT NULL,
    first_session date        NOT NULL,
    last_session  date        NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, symbol)
);
COMMENT ON TABLE watermarks IS
    'The span of sessions each table (or slice of one) has processed per symbol: where catch-up resumes.';

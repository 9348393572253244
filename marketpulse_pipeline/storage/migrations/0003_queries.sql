-- What users read: NYSE sessions, feedback on anomalies, detection quality, and the query
-- surface as views and SQL functions (each mirrors a `marketpulse` CLI command).

CREATE TABLE market_sessions (
    session  date        PRIMARY KEY,
    close_at timestamptz NOT NULL
);
COMMENT ON TABLE market_sessions IS
    'NYSE sessions and their closing time (early closes included), kept in sync by MarketPulse.';

CREATE TABLE anomaly_feedback (
    id          bigserial   PRIMARY KEY,
    anomaly_id  bigint      NOT NULL,
    label       text        NOT NULL CHECK (label IN ('false_positive', 'confirmed')),
    note        text,
    labelled_by text        NOT NULL,
    labelled_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX anomaly_feedback_anomaly_idx ON anomaly_feedback (anomaly_id, labelled_at DESC);
COMMENT ON TABLE anomaly_feedback IS
    'User labels on anomalies, never deleted. No foreign key on purpose: anomaly ids are stable,'
    ' and a label must outlive a re-materialization of its window.';

CREATE TABLE detection_quality (
    method         text             NOT NULL,
    kind           text             NOT NULL,
    detections     integer          NOT NULL,
    events         integer          NOT NULL,
    true_positives integer          NOT NULL,
    events_found   integer          NOT NULL,
    precision      double precision,
    recall         double precision,
    f1             double precision,
    flag_rate      double precision,
    labelled       integer          NOT NULL,
    false_positive_share double precision,
    created_at     timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (method, kind)
);
COMMENT ON TABLE detection_quality IS
    'Precision, recall and F1 of each method and the consensus against injected_anomalies'
    ' (within 1 session), per kind and overall (kind = ''all''), with flag rate and user labels.';

-- The latest label of each anomaly.
CREATE VIEW anomaly_labels AS
SELECT DISTINCT ON (anomaly_id)
       anomaly_id, label, note, labelled_by, labelled_at
  FROM anomaly_feedback
 ORDER BY anomaly_id, labelled_at DESC, id DESC;

-- Labels whose anomaly no longer exists (its window was re-computed with other results).
CREATE VIEW orphaned_feedback AS
SELECT f.*
  FROM anomaly_feedback AS f
 WHERE NOT EXISTS (SELECT 1 FROM anomalies AS a WHERE a.id = f.anomaly_id);

-- Recent anomalies, newest market date first; `days` counts calendar days back from today.
CREATE FUNCTION recent_anomalies(
    p_symbol text DEFAULT NULL,
    p_method text DEFAULT NULL,
    p_type   text DEFAULT NULL,
    p_days   integer DEFAULT 7,
    p_limit  integer DEFAULT 100
) RETURNS TABLE (
    id bigint, symbol text, "timestamp" date, anomaly_type text, method text,
    score double precision, severity double precision, details jsonb, label text, note text,
    created_at timestamptz
) LANGUAGE sql STABLE AS $$
    SELECT a.id, a.symbol, a."timestamp", a.anomaly_type, a.method, a.score, a.severity,
           a.details, l.label, l.note, a.created_at
      FROM anomalies AS a
      LEFT JOIN anomaly_labels AS l ON l.anomaly_id = a.id
     WHERE a."timestamp" > current_date - p_days
       AND (p_symbol IS NULL OR a.symbol = p_symbol)
       AND (p_method IS NULL OR a.method = p_method)
       AND (p_type IS NULL OR a.anomaly_type = p_type)
     ORDER BY a."timestamp" DESC, a.severity DESC, a.id
     LIMIT p_limit
$$;

-- Counts over the last `days` days: one row for the total, then per method, symbol and type.
CREATE FUNCTION anomaly_stats(p_days integer DEFAULT 30)
RETURNS TABLE (dimension text, key text, anomalies bigint)
LANGUAGE sql STABLE AS $$
    WITH recent AS (
        SELECT * FROM anomalies WHERE "timestamp" > current_date - p_days
    )
    SELECT 'total', 'all', count(*) FROM recent
    UNION ALL
    (SELECT 'method', method, count(*) FROM recent GROUP BY method ORDER BY 3 DESC, 2)
    UNION ALL
    (SELECT 'symbol', symbol, count(*) FROM recent GROUP BY symbol ORDER BY 3 DESC, 2)
    UNION ALL
    (SELECT 'type', anomaly_type, count(*) FROM recent GROUP BY anomaly_type ORDER BY 3 DESC, 2)
$$;

-- The latest stored bar of every symbol.
CREATE VIEW latest_prices AS
SELECT DISTINCT ON (symbol)
       symbol, "timestamp", open, high, low, close, volume, source, created_at
  FROM stock_prices
 ORDER BY symbol, "timestamp" DESC;

-- A symbol's bars over the last `days` calendar days, oldest first.
CREATE FUNCTION price_history(p_symbol text, p_days integer DEFAULT 30)
RETURNS TABLE (
    symbol text, "timestamp" date, open double precision, high double precision,
    low double precision, close double precision, volume bigint
) LANGUAGE sql STABLE AS $$
    SELECT symbol, "timestamp", open, high, low, close, volume
      FROM stock_prices
     WHERE symbol = p_symbol AND "timestamp" > current_date - p_days
     ORDER BY "timestamp"
$$;

-- Per symbol: the last stored session, the session that should be there by now (the latest one
-- whose close is more than `grace` ago), and whether the data is stale.
CREATE FUNCTION pipeline_health(p_symbols text[] DEFAULT NULL, p_grace interval DEFAULT '3 hours')
RETURNS TABLE (
    symbol text, last_session date, expected_session date, stale boolean, schema_version integer
) LANGUAGE sql STABLE AS $$
    WITH expected AS (
        SELECT max(session) AS session FROM market_sessions WHERE close_at + p_grace <= now()
    ), symbols AS (
        SELECT unnest(p_symbols) AS symbol WHERE p_symbols IS NOT NULL
        UNION
        SELECT DISTINCT symbol FROM stock_prices WHERE p_symbols IS NULL
    )
    SELECT s.symbol, l."timestamp", e.session,
           l."timestamp" IS NULL OR l."timestamp" < e.session,
           (SELECT max(version) FROM schema_migrations)
      FROM symbols AS s
     CROSS JOIN expected AS e
      LEFT JOIN LATERAL (
          SELECT max(p."timestamp") AS "timestamp" FROM stock_prices AS p WHERE p.symbol = s.symbol
      ) AS l ON true
     ORDER BY s.symbol
$$;

-- Computed tables track the session through which each symbol's rows are valid, instead of the
-- span they were once computed over: a change of prices from session D on lowers it below D, so
-- the next run recomputes everything from D. The old spans cannot say which rows are stale, so
-- every computed table starts over: the next run recomputes each symbol's history once.
DROP TABLE watermarks;
CREATE TABLE watermarks (
    target        text        NOT NULL,
    symbol        text        NOT NULL,
    valid_through date        NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (target, symbol)
);
CREATE INDEX watermarks_symbol_idx ON watermarks (symbol);
COMMENT ON TABLE watermarks IS
    'Per computed table (or one method''s slice of anomalies) and symbol: every row up to'
    ' valid_through equals a computation from scratch over the stored prices.';
TRUNCATE price_features, anomalies, anomaly_consensus;

-- How each asset's last run ended for each symbol.
CREATE TABLE asset_status (
    asset       text        NOT NULL,
    symbol      text        NOT NULL,
    run_id      text        NOT NULL,
    succeeded   boolean     NOT NULL,
    message     text,
    finished_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (asset, symbol)
);
COMMENT ON TABLE asset_status IS
    'The outcome of the last run of each asset for each symbol, with the reason when it failed.';

-- Per symbol: what is stored, how far each computed asset is valid, what is wrong.
DROP FUNCTION pipeline_health(text[], interval);
CREATE FUNCTION pipeline_health(
    p_symbols text[] DEFAULT NULL,
    p_grace   interval DEFAULT '3 hours',
    p_now     timestamptz DEFAULT now()
) RETURNS TABLE (
    symbol text, prices_from date, prices_through date, expected_session date,
    features_through date, detectors_through date, consensus_through date,
    missing_sessions bigint, future_rows bigint, last_failure text, problems text, ok boolean
) LANGUAGE sql STABLE AS $$
    WITH clock AS (
        SELECT (SELECT max(session) FROM market_sessions WHERE close_at + p_grace <= p_now)
                   AS expected,
               (SELECT max(session) FROM market_sessions WHERE close_at <= p_now) AS completed
    ), symbols AS (
        SELECT unnest(p_symbols) AS symbol WHERE p_symbols IS NOT NULL
        UNION
        SELECT DISTINCT symbol FROM stock_prices WHERE p_symbols IS NULL
    ), state AS (
        SELECT s.symbol, p.first, p.last, p.rows, c.expected, c.completed,
               (SELECT valid_through FROM watermarks AS w
                 WHERE w.symbol = s.symbol AND w.target = 'price_features') AS features,
               (SELECT CASE WHEN count(*) = 0 THEN NULL ELSE min(valid_through) END
                  FROM watermarks AS w
                 WHERE w.symbol = s.symbol AND w.target LIKE 'anomalies[%') AS detectors,
               (SELECT valid_through FROM watermarks AS w
                 WHERE w.symbol = s.symbol AND w.target = 'anomaly_consensus') AS consensus,
               (SELECT string_agg(a.asset || ': ' || coalesce(a.message, 'failed'), '; '
                                  ORDER BY a.asset)
                  FROM asset_status AS a
                 WHERE a.symbol = s.symbol AND NOT a.succeeded) AS failure
          FROM symbols AS s
         CROSS JOIN clock AS c
          LEFT JOIN LATERAL (
              SELECT min(t."timestamp") AS first, max(t."timestamp") AS last, count(*) AS rows
                FROM stock_prices AS t WHERE t.symbol = s.symbol
          ) AS p ON true
    ), measured AS (
        SELECT st.*,
               (SELECT count(*) FROM market_sessions AS m
                 WHERE m.session BETWEEN st.first AND least(st.last, st.completed))
               - (SELECT count(*) FROM stock_prices AS t
                   WHERE t.symbol = st.symbol AND t."timestamp" <= st.completed) AS missing,
               (SELECT count(*) FROM stock_prices AS t
                 WHERE t.symbol = st.symbol AND t."timestamp" > st.completed) AS future
          FROM state AS st
    ), judged AS (
        SELECT m.*, concat_ws('; ',
            CASE WHEN m.last IS NULL THEN 'no prices stored'
                 WHEN m.last < m.expected THEN 'prices end ' || m.last || ', expected ' || m.expected
            END,
            CASE WHEN m.missing > 0 THEN m.missing || ' sessions missing' END,
            CASE WHEN m.future > 0 THEN m.future || ' rows after the latest completed session' END,
            CASE WHEN m.last IS NOT NULL AND m.features IS DISTINCT FROM m.last
                 THEN 'price_features valid through ' || coalesce(m.features::text, 'nothing') END,
            CASE WHEN m.last IS NOT NULL AND m.detectors IS DISTINCT FROM m.last
                 THEN 'anomalies valid through ' || coalesce(m.detectors::text, 'nothing') END,
            CASE WHEN m.last IS NOT NULL AND m.consensus IS DISTINCT FROM m.last
                 THEN 'anomaly_consensus valid through ' || coalesce(m.consensus::text, 'nothing')
            END,
            CASE WHEN m.failure IS NOT NULL THEN 'last run failed: ' || m.failure END
        ) AS problems
          FROM measured AS m
    )
    SELECT j.symbol, j.first, j.last, j.expected, j.features, j.detectors, j.consensus,
           coalesce(j.missing, 0), coalesce(j.future, 0), j.failure,
           nullif(j.problems, ''), j.problems = ''
      FROM judged AS j
     ORDER BY j.symbol
$$;

-- "The last N days" counts back from `p_today` (default: the server's date), so a pinned clock
-- (MARKETPULSE_NOW) reads the same rows on every day.
DROP FUNCTION recent_anomalies(text, text, text, integer, integer);
CREATE FUNCTION recent_anomalies(
    p_symbol text DEFAULT NULL,
    p_method text DEFAULT NULL,
    p_type   text DEFAULT NULL,
    p_days   integer DEFAULT 7,
    p_limit  integer DEFAULT 100,
    p_today  date DEFAULT current_date
) RETURNS TABLE (
    id bigint, symbol text, "timestamp" date, anomaly_type text, method text,
    score double precision, severity double precision, details jsonb, label text, note text,
    created_at timestamptz
) LANGUAGE sql STABLE AS $$
    SELECT a.id, a.symbol, a."timestamp", a.anomaly_type, a.method, a.score, a.severity,
           a.details, l.label, l.note, a.created_at
      FROM anomalies AS a
      LEFT JOIN anomaly_labels AS l ON l.anomaly_id = a.id
     WHERE a."timestamp" > p_today - p_days AND a."timestamp" <= p_today
       AND (p_symbol IS NULL OR a.symbol = p_symbol)
       AND (p_method IS NULL OR a.method = p_method)
       AND (p_type IS NULL OR a.anomaly_type = p_type)
     ORDER BY a."timestamp" DESC, a.severity DESC, a.id
     LIMIT p_limit
$$;

DROP FUNCTION anomaly_stats(integer);
CREATE FUNCTION anomaly_stats(p_days integer DEFAULT 30, p_today date DEFAULT current_date)
RETURNS TABLE (dimension text, key text, anomalies bigint)
LANGUAGE sql STABLE AS $$
    WITH recent AS (
        SELECT * FROM anomalies WHERE "timestamp" > p_today - p_days AND "timestamp" <= p_today
    )
    SELECT 'total', 'all', count(*) FROM recent
    UNION ALL
    (SELECT 'method', method, count(*) FROM recent GROUP BY method ORDER BY 3 DESC, 2)
    UNION ALL
    (SELECT 'symbol', symbol, count(*) FROM recent GROUP BY symbol ORDER BY 3 DESC, 2)
    UNION ALL
    (SELECT 'type', anomaly_type, count(*) FROM recent GROUP BY anomaly_type ORDER BY 3 DESC, 2)
$$;

DROP FUNCTION price_history(text, integer);
CREATE FUNCTION price_history(
    p_symbol text, p_days integer DEFAULT 30, p_today date DEFAULT current_date
) RETURNS TABLE (
    symbol text, "timestamp" date, open double precision, high double precision,
    low double precision, close double precision, volume bigint
) LANGUAGE sql STABLE AS $$
    SELECT symbol, "timestamp", open, high, low, close, volume
      FROM stock_prices
     WHERE symbol = p_symbol AND "timestamp" > p_today - p_days AND "timestamp" <= p_today
     ORDER BY "timestamp"
$$;

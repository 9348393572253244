-- Alerts get a stable id, as anomalies have, so that people can label them (`marketpulse label`)
-- and a symbol whose alerts are labelled false positive gets a stricter budget from the day
-- after the label on. The scores are recomputed once, with their ids.
TRUNCATE alert_scores;
DELETE FROM watermarks WHERE target = 'alert_scores';
ALTER TABLE alert_scores ADD COLUMN id bigint NOT NULL;
CREATE UNIQUE INDEX alert_scores_id_idx ON alert_scores (id);

DROP FUNCTION recent_alerts;
DROP VIEW alerts;
CREATE VIEW alerts AS
SELECT s.id, s.symbol, s."timestamp", s.p_value, s.methods, s.market_wide, s.return_pct,
       s.details, l.label
  FROM alert_scores AS s
  LEFT JOIN anomaly_labels AS l ON l.anomaly_id = s.id
 WHERE s.is_alert;
COMMENT ON VIEW alerts IS
    'The sessions to act on: combined probability within the budget, the signals behind it, and'
    ' the latest label people gave it.';

CREATE FUNCTION recent_alerts(
    p_symbol text DEFAULT NULL,
    p_days   integer DEFAULT 30,
    p_limit  integer DEFAULT 100,
    p_today  date DEFAULT current_date
) RETURNS TABLE (
    id bigint, symbol text, "timestamp" date, p_value double precision, methods text[],
    market_wide boolean, return_pct double precision, details jsonb, label text
) LANGUAGE sql STABLE AS $$
    SELECT a.id, a.symbol, a."timestamp", a.p_value, a.methods, a.market_wide, a.return_pct,
           a.details, a.label
      FROM alerts AS a
     WHERE a."timestamp" > p_today - p_days AND a."timestamp" <= p_today
       AND (p_symbol IS NULL OR a.symbol = p_symbol)
     ORDER BY a."timestamp" DESC, a.p_value, a.symbol
     LIMIT p_limit
$$;

-- Labels whose anomaly or alert no longer exists (its window was re-computed with other results).
CREATE OR REPLACE VIEW orphaned_feedback AS
SELECT f.*
  FROM anomaly_feedback AS f
 WHERE NOT EXISTS (SELECT 1 FROM anomalies AS a WHERE a.id = f.anomaly_id)
   AND NOT EXISTS (SELECT 1 FROM alert_scores AS s WHERE s.id = f.anomaly_id AND s.is_alert);

-- A label on an alert keeps its symbol: the alert layer reads a symbol's labels to tighten its
-- budget, whether or not the labelled row is still stored when it recomputes.
ALTER TABLE anomaly_feedback
    ADD COLUMN symbol   text,
    ADD COLUMN on_alert boolean NOT NULL DEFAULT false;
CREATE OR REPLACE VIEW anomaly_labels AS
SELECT DISTINCT ON (anomaly_id)
       anomaly_id, label, note, labelled_by, labelled_at, symbol, on_alert
  FROM anomaly_feedback
 ORDER BY anomaly_id, labelled_at DESC, id DESC;

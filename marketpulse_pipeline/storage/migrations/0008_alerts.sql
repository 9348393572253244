-- The alert layer: every symbol-session's calibrated signals and combined probability, and the
-- relation people act on, `alerts`, the rare sessions whose probability is within the budget.
CREATE TABLE alert_scores (
    symbol                text             NOT NULL,
    "timestamp"           date             NOT NULL,
    p_value               double precision CHECK (p_value BETWEEN 0 AND 1),
    is_alert              boolean          NOT NULL,
    market_wide           boolean          NOT NULL,
    return_pct            double precision,
    p_return              double precision,
    p_volatility_adjusted double precision,
    p_range               double precision,
    p_volume              double precision,
    p_market_relative     double precision,
    methods               text[]           NOT NULL,
    details               jsonb,
    created_at            timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (symbol, "timestamp")
);
CREATE INDEX alert_scores_alerts_idx ON alert_scores ("timestamp") WHERE is_alert;
COMMENT ON TABLE alert_scores IS
    'Per symbol and session: each signal''s tail probability against the symbol''s own past,'
    ' their harmonic-mean combination (p_value), and whether it is an alert.';

CREATE VIEW alerts AS
SELECT symbol, "timestamp", p_value, methods, market_wide, return_pct, details
  FROM alert_scores
 WHERE is_alert;
COMMENT ON VIEW alerts IS
    'The sessions to act on: combined probability within the budget, with the signals behind it.';

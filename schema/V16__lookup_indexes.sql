-- Lookups the shells make by a column other than the key: anomalies and reports of one
-- microstore, the posts of one district or in one status.
CREATE INDEX anomalies_microstore ON anomalies (microstore);
CREATE INDEX analytics_narratives_microstore ON analytics_narratives (microstore);
CREATE INDEX social_calendars_district ON social_calendars (district);
CREATE INDEX social_calendars_status ON social_calendars (status);

-- The devices watchers saw, so a user who was present before a restart is shown
-- the same way (devices included) until their offline_after_ms runs out.
ALTER TABLE presence ADD COLUMN devices TEXT NOT NULL DEFAULT '[]';

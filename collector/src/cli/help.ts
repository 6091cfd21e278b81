export const HELP = `pga-collector: collects PostgreSQL statistics and pushes them to pgAnalytics Central.

Usage: pga-collector [--once | --dry-run | --check | --enroll | --help]

  (no option)  run: pull config, collect every interval, spool, push, heartbeat
  --once       collect one snapshot, push it (and anything spooled), print a summary
  --dry-run    collect one snapshot and print its JSON; nothing is pushed or spooled
  --check      test the configuration, the central and the target; names the failing stage
  --enroll     register with REGISTRATION_SECRET; saves the id and token (0600) for later starts
  --help       this text

Environment:
  CENTRAL_API_URL            ingest edge URL (default http://127.0.0.1:8080)
  COLLECTOR_ID               collector UUID            } or enroll once with --enroll
  COLLECTOR_JWT_TOKEN        collector token           }
  REGISTRATION_SECRET        enrollment secret (--enroll only); COLLECTOR_NAME names the collector
  COLLECTOR_STATE_DIR        state folder (default ~/.local/state/pganalytics-collector)
  COLLECTOR_SPOOL_DIR        spool folder (default <state dir>/spool/<collector id>)
  TARGET_DATABASE_URL        postgresql:// URL overriding the centrally configured target
  LOG_LEVEL                  fatal|error|warn|info|debug|trace|silent (default info; logs go to stderr)
  See collector/README.md for every variable.
`;

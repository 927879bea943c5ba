"""When things run: the in-process job runner, cron times, and when to poll a feed next."""

"""``manage.py demo``: create the demo database if needed, migrate (which syncs the views),
load deterministic sample data, refresh the materialized views concurrently and print a short
report; then new events arrive and ``refresh_pgviews --stale`` refreshes the view they make
stale while it skips the fresh one. Safe to run again: the data is replaced and the second sync
changes nothing."""

from __future__ import annotations

import datetime
import io
import random
import textwrap
import time
from typing import Any

from django.conf import settings
from django.contrib.postgres.search import SearchQuery
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from django_pgviews_c import view as pg
from django_pgviews_c.refresh import refresh_views
from django_pgviews_c.sync import view_models
from newsletter.models import Event, Game, Player, PlayerGameStats, SeasonStats

EVENT_NAMES = ["signup", "login", "open", "click", "unsubscribe", "share", "reply", "bounce"]
TEAMS = [
    "Riverside Rockets",
    "Harbor Herons",
    "Summit Owls",
    "Prairie Comets",
    "Lakeside Lynx",
    "Canyon Kites",
]
FIRST = ["Ada", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun"]
LAST = ["Okafor", "Lindqvist", "Moreau", "Tanaka", "Reyes", "Novak", "Adeyemi", "Kowalski"]

N_EVENTS = 5000
N_PLAYERS = 30
N_GAMES = 80
SEASON = 2024


class Command(BaseCommand):
    help = "Run the django-pgviews-c demo: create the database, migrate, load data, refresh, report."

    def handle(self, *args: Any, **options: Any) -> None:
        self.ensure_database()
        started = time.perf_counter()
        call_command("migrate", verbosity=0)
        self.say(f"migrate: done in {time.perf_counter() - started:.2f}s (views synced by post_migrate)")

        self.load_data()
        self.flush_statistics()

        result = refresh_views(concurrently=True)
        self.say(f"refreshed {result.count} materialized views concurrently in {result.wall:.3f}s")
        # Fresh statistics, as after any bulk load: pgviews_status shows the planner's row
        # estimates, which a refresh alone does not update.
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")

        self.report_views(result.seconds)
        self.report_players()
        self.report_search()
        self.report_stale()
        self.report_status()
        self.report_warm_sync()

    # -- steps ---------------------------------------------------------------------------------

    def ensure_database(self) -> None:
        """Create the demo database on the server when it is missing, over an autocommit
        connection to the "postgres" database (CREATE DATABASE cannot run in a transaction)."""
        db = settings.DATABASES["default"]
        params = {
            "host": db["HOST"],
            "port": db["PORT"],
            "user": db["USER"],
            "password": db["PASSWORD"],
        }
        params = {k: v for k, v in params.items() if v}
        try:
            import psycopg
        except ImportError:  # a project on psycopg2
            import psycopg2 as driver
            from psycopg2 import sql

            conn = driver.connect(dbname="postgres", **params)
            conn.autocommit = True
        else:
            from psycopg import sql

            conn = psycopg.connect(dbname="postgres", autocommit=True, **params)
        try:
            with conn.cursor() as cursor:
                cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db["NAME"]])
                if cursor.fetchone():
                    self.say(f"database {db['NAME']!r} exists")
                else:
                    cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
                    self.say(f"database {db['NAME']!r} created")
        finally:
            conn.close()

    def load_data(self) -> None:
        """Replace the sample data with the same deterministic rows every run."""
        rng = random.Random(SEASON)
        started = time.perf_counter()
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute(
                    "TRUNCATE newsletter_event, newsletter_playergamestats, newsletter_game, "
                    "newsletter_player RESTART IDENTITY"
                )
            start = datetime.datetime(SEASON, 1, 1, tzinfo=datetime.timezone.utc)
            Event.objects.bulk_create(
                Event(
                    event=rng.choice(EVENT_NAMES),
                    count=rng.randint(1, 20),
                    happened_at=start + datetime.timedelta(minutes=rng.randint(0, 365 * 24 * 60)),
                )
                for _ in range(N_EVENTS)
            )
            names = [f"{first} {last}" for last in LAST for first in FIRST]
            rng.shuffle(names)
            players = Player.objects.bulk_create(
                Player(name=names[i], team=TEAMS[i % len(TEAMS)]) for i in range(N_PLAYERS)
            )
            games = []
            for g in range(N_GAMES):
                home, away = rng.sample(TEAMS, 2)
                games.append(
                    Game(
                        season=SEASON,
                        played_on=datetime.date(SEASON, 1, 1) + datetime.timedelta(days=2 * g),
                        home_team=home,
                        away_team=away,
                    )
                )
            games = Game.objects.bulk_create(games)
            skill = {p.pk: rng.uniform(0.5, 1.6) for p in players}
            lines = [
                PlayerGameStats(
                    player=p,
                    game=game,
                    points=round(rng.randint(0, 24) * skill[p.pk]),
                    rebounds=rng.randint(0, 12),
                    assists=rng.randint(0, 9),
                )
                for game in games
                for p in players
                if p.team in (game.home_team, game.away_team) and rng.random() < 0.9
            ]
            PlayerGameStats.objects.bulk_create(lines)
        self.say(
            f"loaded {N_EVENTS} events, {len(players)} players, {len(games)} games, "
            f"{len(lines)} box-score lines in {time.perf_counter() - started:.2f}s"
        )

    def report_views(self, seconds: dict[str, float]) -> None:
        self.say("")
        self.say(f"{'view':<26} {'db table':<28} {'kind':<17} {'rows':>5}  refresh")
        for model in view_models():
            label = model._meta.label
            kind = "materialized view" if issubclass(model, pg.MaterializedView) else "view"
            took = f"{seconds[label] * 1000:.1f} ms" if label in seconds else "-"
            rows = model.objects.count()
            self.say(f"{label:<26} {model._meta.db_table:<28} {kind:<17} {rows:>5}  {took}")

    def report_players(self) -> None:
        self.say("")
        self.say(f"Top 5 scorers of the {SEASON} season (SeasonStats):")
        for rank, s in enumerate(SeasonStats.objects.order_by("-points", "name")[:5], 1):
            self.say(
                f"  {rank}. {s.name:<16} {s.team:<18} {s.points:>5} pts in {s.games} games "
                f"({s.points_per_game} ppg, {s.rebounds_per_game} rpg, {s.assists_per_game} apg)"
            )

    def report_search(self) -> None:
        self.say("")
        self.say("Full-text search through the ORM (SearchQuery on SeasonStats.search, GIN index):")
        for text in ("herons", "ada kites"):
            query = SearchQuery(text, config="simple")
            hits = SeasonStats.objects.filter(search=query).order_by("name")
            found = ", ".join(s.name for s in hits) or "nothing"
            self.say(textwrap.fill(f"  {text!r}: {found}", width=96, subsequent_indent="      "))

    def report_status(self) -> None:
        self.say("")
        self.say("pgviews_status:")
        out = io.StringIO()
        call_command("pgviews_status", stdout=out)
        for line in out.getvalue().rstrip().splitlines():
            self.say(f"  {line}".rstrip())

    def report_warm_sync(self) -> None:
        self.say("")
        out = io.StringIO()
        with CaptureQueriesContext(connection) as queries:
            call_command("sync_pgviews", stdout=out)
        summary = out.getvalue().strip().splitlines()[-1]
        self.say(f"sync_pgviews again: {summary}; {len(queries)} database query")

    def flush_statistics(self) -> None:
        """Make this session's writes visible in the statistics counters now, which staleness
        reads (PostgreSQL 15+; older servers publish them within about 10 seconds)."""
        if connection.pg_version >= 150000:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_stat_force_next_flush()")

    def report_stale(self) -> None:
        """New events make EventMatView stale; the players' tables did not change, so
        SeasonStats is fresh: refresh_pgviews --stale refreshes the one and skips the other
        (docs/freshness.md)."""
        rng = random.Random(SEASON + 1)
        now = datetime.datetime(SEASON + 1, 1, 1, tzinfo=datetime.timezone.utc)
        Event.objects.bulk_create(
            Event(event=rng.choice(EVENT_NAMES), count=rng.randint(1, 20), happened_at=now)
            for _ in range(100)
        )
        self.flush_statistics()
        self.say("")
        self.say("100 new events arrive; the players' tables do not change. refresh_pgviews --stale:")
        out = io.StringIO()
        call_command("refresh_pgviews", "--stale", "--concurrently", stdout=out)
        for line in out.getvalue().rstrip().splitlines():
            self.say(f"  {line}".rstrip())

    def say(self, text: str) -> None:
        self.stdout.write(text)

"""Two examples of views declared as models.

Events: a table of counted events, a view totalling them per event (written as a QuerySet,
compiled to SQL when the views are synced), and a materialized view over that view (the
intermediate-view pattern: the materialized view's SQL stays a plain ``SELECT *``, the logic
lives in the view it depends on).

Basketball: players, games and per-game box scores, with a materialized view of season
totals and averages per player, refreshed concurrently thanks to its unique index, and a
full-text-search column with a GIN index.
"""

from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from django.db.models import Sum

from django_pgviews_c import view as pg

# ---- events ---------------------------------------------------------------------------------


class Event(models.Model):
    event = models.CharField(max_length=100)
    count = models.IntegerField()
    happened_at = models.DateTimeField()


# Tables keep Django's default names (newsletter_event, newsletter_eventview, ...). A view
# inherits ``managed = False`` from pg.View; a view that declares its own Meta must repeat it.


class EventView(pg.View):
    # A callable: a QuerySet cannot be built while the models load. The same as
    # "SELECT event, sum(count) AS total FROM newsletter_event GROUP BY event".
    sql = lambda: Event.objects.values("event").annotate(total=Sum("count"))  # noqa: E731

    event = models.CharField(max_length=100, primary_key=True)
    total = models.BigIntegerField()


class EventMatView(pg.MaterializedView):
    dependencies = ["newsletter.EventView"]
    concurrent_index = "event"
    sql = "SELECT * FROM newsletter_eventview"

    event = models.CharField(max_length=100, primary_key=True)
    total = models.BigIntegerField()


# ---- basketball -----------------------------------------------------------------------------


class Player(models.Model):
    name = models.CharField(max_length=100)
    team = models.CharField(max_length=100)

    def __str__(self) -> str:
        return self.name


class Game(models.Model):
    season = models.IntegerField()
    played_on = models.DateField()
    home_team = models.CharField(max_length=100)
    away_team = models.CharField(max_length=100)


class PlayerGameStats(models.Model):
    player = models.ForeignKey(Player, on_delete=models.CASCADE, related_name="game_stats")
    game = models.ForeignKey(Game, on_delete=models.CASCADE, related_name="player_stats")
    points = models.IntegerField()
    rebounds = models.IntegerField()
    assists = models.IntegerField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["player", "game"], name="one_line_per_player_game")]


class SeasonStats(pg.ReadOnlyMaterializedView):
    """Season totals and averages per player. ``player`` is the primary key Django needs; its
    column ``player_id`` carries the unique index that concurrent refresh requires."""

    concurrent_index = "player_id"
    sql = """
        SELECT p.id AS player_id,
               p.name,
               p.team,
               count(*) AS games,
               sum(s.points) AS points,
               sum(s.rebounds) AS rebounds,
               sum(s.assists) AS assists,
               round(avg(s.points), 1) AS points_per_game,
               round(avg(s.rebounds), 1) AS rebounds_per_game,
               round(avg(s.assists), 1) AS assists_per_game,
               to_tsvector('simple', p.name || ' ' || p.team) AS search
        FROM newsletter_player p
        JOIN newsletter_playergamestats s ON s.player_id = p.id
        GROUP BY p.id, p.name, p.team
    """

    player = models.OneToOneField(
        Player,
        primary_key=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="season_stats",
    )
    name = models.CharField(max_length=100)
    team = models.CharField(max_length=100)
    games = models.BigIntegerField()
    points = models.BigIntegerField()
    rebounds = models.BigIntegerField()
    assists = models.BigIntegerField()
    points_per_game = models.DecimalField(max_digits=6, decimal_places=1)
    rebounds_per_game = models.DecimalField(max_digits=6, decimal_places=1)
    assists_per_game = models.DecimalField(max_digits=6, decimal_places=1)
    search = SearchVectorField()

    class Meta:
        managed = False
        indexes = [GinIndex(fields=["search"], name="season_stats_search_gin")]

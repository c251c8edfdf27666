"""The API's routes, one module per family; ROUTERS lists them in the order the app includes them."""

from activity_service.interfaces.http.routes import activities, erasures, health, stream

# The stream router first: its fixed path must win over /api/activities/{activity_id}.
ROUTERS = (stream.router, activities.router, erasures.router, health.router)

"""The API's routes, one module per family; ROUTERS lists them in the order the app includes them."""

from activity_service.interfaces.http.routes import activities, health

ROUTERS = (activities.router, health.router)

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path


def index(request: HttpRequest) -> HttpResponse:
    return HttpResponse("djsupervisor demo: the web program is up\n", content_type="text/plain")


urlpatterns = [
    path("", index),
    # The Programs page, before the admin's own URLs (which would shadow it).
    path("admin/supervisor/", include("djsupervisor.urls")),
    path("admin/", admin.site.urls),
]

"""URL routes of the example Django project."""

from django.contrib import admin
from django.urls import path

from . import views

urlpatterns = [
    path("", views.index),
    path("form/", views.contact),
    path("api/items/<int:item_id>/", views.item),
    path("stream/", views.stream),
    path("file/", views.download),
    path("admin/", admin.site.urls),
]

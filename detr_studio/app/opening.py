"""Opening and saving projects: the three ways in (a folder, image files, a COCO file), recent projects,
recovering a journal, finding images that are not where a COCO file says, Save / Save As / autosave, and the
window title.

Opening runs on a background lane (a project of 100,000 images takes a while to read); when it is in,
`set_project` hands it to the session and ``opened`` fires. A file that another DETR Studio window has open
comes in read-only (its document says so, naming that window's process): editing is off and the title says
so. Saving calls ``CocoDocument.save`` (atomic, keeps backups) and tells the session where the file now is;
when the file changed on disk since it was read, the user chooses: reload it, save as another file, or
overwrite it. Autosave writes a dirty document that has a file, when the image changes and every minute, and
never when undo has brought it back to what its file holds, nor over a file that changed on disk.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtWidgets import QApplication, QFileDialog, QMenu

from detr_studio.common.text import plural
from detr_studio.data.coco import CocoConflictError, CocoEditError, CocoFormatError, CocoSaveError
from detr_studio.data.images import is_image_file
from detr_studio.session import Session
from detr_studio.session import project as projects

from .background import Lane
from .services import APP_NAME, Services
from .views import Controller, Views

MAX_RECENT = 10
MAX_IMAGE_FOLDERS = 200
RELOAD, SAVE_AS, OVERWRITE, CANCEL = "Reload", "Save As…", "Overwrite", "Cancel"
IMAGE_FOLDERS_KEY = "image_folders"  # {COCO file: the image folder the user chose for it}, as JSON
AUTOSAVE_MS = 60_000
IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.bmp *.tif *.tiff *.webp)"
Opener = Callable[..., projects.Project]


class ProjectController(Controller):
    """See the module docstring. ``opened`` fires once a project is in place."""

    opened = Signal()

    def __init__(self, session: Session, services: Services, views: Views, parent: QObject | None = None):
        super().__init__(session, services, views, parent)
        self.image_panel = views.image_panel
        self.window = views.window
        self.opening = False
        self.autosave = bool(services.settings.value("autosave", True, type=bool))
        self.lane = Lane("open", parent=self)
        self._timer = QTimer(self)
        self._timer.setInterval(AUTOSAVE_MS)
        self._timer.timeout.connect(self.autosave_now)
        self._timer.start()
        self._last_image: int | None = None
        self._journal_reported: str | None = None  # the journal problem already told to the user
        session.events.edited.connect(lambda _change: self.update_title())
        session.events.image.connect(self._on_image)

    # ---- choosing ----------------------------------------------------------------------------------------

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self.window, "Open a folder of images")
        if folder:
            self.open_folder(folder)

    def choose_images(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self.window, "Open images", "", IMAGE_FILTER)
        if files:
            self.open_images(files)

    def choose_coco(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self.window, "Open a COCO dataset (instances or panoptic JSON)", "", "COCO JSON (*.json)"
        )
        if path:
            self.open_coco(path)

    def choose_image_root(self) -> Path | None:
        """Ask where the images are; returns the folder (the caller shows the current image again). A COCO
        file remembers the folder chosen for it."""
        doc = self.session.doc
        if doc is None:
            return None
        folder = self.services.choose_folder("Folder that holds the images", str(doc.image_root or ""))
        if folder is None:
            return None
        doc.image_root = folder
        if doc.path is not None and projects.images_found(doc):
            self._remember_image_folder(doc.path, folder)
        self.image_panel.model.forget_problems()
        return doc.image_root

    def _find_images(self, project: projects.Project) -> str:
        """A COCO file whose images are not where it says: use the folder chosen for it before, else ask for
        it once. Returns what the opening message should add ("" when the images are where expected)."""
        doc = project.doc
        if project.kind != projects.COCO or doc.path is None or projects.images_found(doc):
            return ""
        remembered = self._image_folders().get(str(doc.path.absolute()))
        if remembered and projects.images_found(doc, remembered):
            doc.image_root = Path(remembered)
            return f"; images from {remembered}"
        looked = doc.image_root
        self.services.status(
            f"The images of {doc.path.name} are not in {looked}: choose the folder that holds them"
        )
        folder = self.services.choose_folder(
            f"Where are the images of {doc.path.name}?", str(doc.path.parent)
        )
        if folder is None:
            return f"; its images are not in {looked}: choose their folder with File > Set Image Folder…"
        doc.image_root = folder
        if not projects.images_found(doc):
            return (
                f"; its images are not in {folder} either: choose their folder with File > Set Image Folder…"
            )
        self._remember_image_folder(doc.path, folder)
        return f"; images from {folder}"

    def _image_folders(self) -> dict[str, str]:
        """The image folder chosen for each COCO file (by its absolute path), from the settings."""
        try:
            value = json.loads(str(self.services.settings.value(IMAGE_FOLDERS_KEY, "{}")))
        except ValueError:
            return {}
        return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}

    def _remember_image_folder(self, coco_file: Path, folder: Path) -> None:
        folders = self._image_folders()
        key = str(coco_file.absolute())
        folders.pop(key, None)
        folders[key] = str(folder)
        kept = dict(list(folders.items())[-MAX_IMAGE_FOLDERS:])
        self.services.settings.setValue(IMAGE_FOLDERS_KEY, json.dumps(kept))

    # ---- opening -----------------------------------------------------------------------------------------

    def open_folder(self, folder: str | Path) -> None:
        """Open every image under ``folder`` (or its saved ``annotations.json``) in the background."""
        self.open_async(f"Opening {folder}…", projects.open_folder, Path(folder))

    def open_images(self, paths: Sequence[str | Path]) -> None:
        self.open_async("Opening images…", projects.open_images, [Path(p) for p in paths])

    def open_coco(self, path: str | Path, image_root: str | Path | None = None) -> None:
        """Open a COCO instances or panoptic JSON file; ``image_root`` defaults to a guess beside it."""
        self.open_async(f"Opening {path}…", projects.open_coco, Path(path), image_root)

    def open_path(self, path: str | Path) -> None:
        """Open whatever ``path`` is: a folder, a COCO JSON file or an image."""
        path = Path(path)
        if path.is_dir():
            self.open_folder(path)
        elif path.suffix.lower() == ".json":
            self.open_coco(path)
        elif is_image_file(path):
            self.open_images([path])
        else:
            self.services.report_error(f"{path}: not a folder, a COCO JSON file or an image")

    def open_recent(self, entry: str) -> None:
        self.open_async("Opening recent project…", projects.open_recent, entry)

    def reopen_last(self) -> bool:
        """Open the project of the last start again (the first recent project); when it is gone, the status
        bar says so and nothing opens. False when there is no recent project."""
        entries = self.recent_projects()
        if not entries:
            return False
        where = projects.recent_path(entries[0])
        if where is None or not where.exists():
            self.services.status(
                f"The last project, {where or entries[0]}, is no longer there: open one from the File menu"
            )
            return True
        self.open_async(f"Reopening {where}…", projects.open_recent, entries[0])
        return True

    def open_async(
        self,
        message: str,
        opener: Opener,
        *args: object,
        then: Callable[[projects.Project], object] | None = None,
        failed: Callable[[BaseException], object] | None = None,
    ) -> bool:
        """Open a project with ``opener(*args)`` on the open lane, then show it and call ``then``; False when
        the user kept unsaved changes (nothing opens)."""
        if not self.may_discard_changes():
            return False
        self.opening = True
        self.services.status(message)
        QApplication.setOverrideCursor(Qt.CursorShape.BusyCursor)

        def done(project: projects.Project) -> None:
            self._settle()
            self.set_project(project)
            if then is not None:
                then(project)

        def fail(exc: BaseException) -> None:
            self._settle()
            self.services.report_error(
                str(exc) if isinstance(exc, (CocoFormatError, OSError, ValueError)) else repr(exc)
            )
            if failed is not None:
                failed(exc)

        self.lane.submit(opener, *args, done=done, failed=fail)
        return True

    def _settle(self) -> None:
        QApplication.restoreOverrideCursor()
        self.opening = False

    def set_project(self, project: projects.Project) -> None:
        """Show ``project`` (replacing the current one): recovers its journal, fills the list, shows image 1."""
        doc = project.doc
        if doc.pending_journal:
            answer = self.services.ask(
                "Recover unsaved edits?",
                f"{plural(len(doc.pending_journal), 'edit')} to {doc.path or project.location} were not saved when DETR"
                " Studio last stopped. Recover them?",
                ("Recover", "Discard"),
            )
            if answer == "Recover":
                doc.replay_journal()
            else:
                doc.discard_journal()
        found = self._find_images(project)
        worker = self.services.worker
        worker.cancel_batch()  # its results would belong to the old project
        worker.current_image = None
        self._last_image = None
        self.image_panel.set_document(doc, project.images)
        self.session.set_project(project)  # the presenter and the navigator follow: the first image shows
        self._add_recent(project.recent_entry())
        kind = "panoptic" if doc.is_panoptic else "instances"
        message = (
            f"Opened {self.title_name()}: {plural(self.image_panel.model.total, 'image')} ({kind}){found}"
        )
        if doc.warnings:
            message += f"; {plural(len(doc.warnings), 'warning')}, the first: {doc.warnings[0]}"
        self.services.status(message, 15_000)
        if doc.read_only:
            self.services.report_error(
                f"{doc.read_only_reason}.\nEditing is off in this window; File > Save As… writes a copy you can edit."
            )
        self.update_title()
        self.opened.emit()

    # ---- recent projects ---------------------------------------------------------------------------------

    def recent_projects(self) -> list[str]:
        value = self.services.settings.value("recent", [])
        if isinstance(value, str):
            value = [value]
        return [str(v) for v in (value or [])]

    def _add_recent(self, entry: str) -> None:
        entries = [e for e in self.recent_projects() if e != entry]
        self.services.settings.setValue("recent", [entry, *entries][:MAX_RECENT])

    def fill_recent_menu(self, menu: QMenu) -> None:
        menu.clear()
        entries = self.recent_projects()
        if not entries:
            menu.addAction("(none)").setEnabled(False)
        for entry in entries:
            action = menu.addAction(projects.recent_label(entry))
            action.triggered.connect(lambda _checked=False, entry=entry: self.open_recent(entry))

    # ---- saving ------------------------------------------------------------------------------------------

    def save(self) -> bool:
        """Save to the document's file (a new folder project: ``<folder>/annotations.json``)."""
        project = self.session.project
        if project is None:
            return False
        target = project.doc.path or project.default_save
        if target is None or project.doc.read_only:
            return self.save_as_dialog()  # a read-only document is saved as a copy
        return self.save_as(target)

    def save_as_dialog(self) -> bool:
        project = self.session.project
        if project is None:
            return False
        start = str(project.doc.path or project.default_save or "")
        path, _ = QFileDialog.getSaveFileName(
            self.window, "Save COCO annotations", start, "COCO JSON (*.json)"
        )
        return self.save_as(path) if path else False

    def save_as(self, path: str | Path, overwrite: bool = False) -> bool:
        """Write the document atomically to ``path``; on failure the old file and the dirty state stay. When
        the file changed on disk since it was read, the user chooses: reload it, save as another file, or
        overwrite it (``overwrite`` does so without asking)."""
        project = self.session.project
        if project is None:
            return False
        try:
            written = project.doc.save(path, overwrite=overwrite)
        except CocoConflictError:
            return self._resolve_conflict(Path(path))
        except CocoSaveError as exc:
            self.services.report_error(str(exc))
            self.update_title()
            return False
        self.session.mark_saved(written)
        self._add_recent(project.recent_entry())
        self.services.status(f"Saved {written}", 5_000)
        self.update_title()
        return True

    def _resolve_conflict(self, path: Path) -> bool:
        """The file changed on disk since it was read: reload it, save as another file, or overwrite it."""
        answer = self.services.ask(
            "The file changed on disk",
            f"{path} changed on disk since DETR Studio read it (another program or window wrote it).\n\n"
            "Reload it (the edits not saved here are dropped), save your version as another file, or overwrite"
            " the file with your version?",
            (RELOAD, SAVE_AS, OVERWRITE, CANCEL),
            default=SAVE_AS,
        )
        if answer == OVERWRITE:
            return self.save_as(path, overwrite=True)
        if answer == SAVE_AS:
            return self.save_as_dialog()
        if answer == RELOAD:
            return self.reload()
        self.services.status(f"Not saved: {path} changed on disk", 10_000)
        return False

    def reload(self) -> bool:
        """Read the open COCO file again as it is on disk now (edits not saved are dropped)."""
        project = self.session.project
        if project is None or project.doc.path is None:
            return False
        try:
            fresh = project.doc.reload()
        except (CocoFormatError, CocoEditError) as exc:
            self.services.report_error(str(exc))
            return False
        self.set_project(dataclasses.replace(project, doc=fresh, images=None))
        return True

    def autosave_now(self) -> None:
        """Save a dirty document that already has its file (autosave never creates a file unasked), unless
        undo has brought it back to what its file holds, it is read-only, or its file changed on disk (then
        Save asks what to do)."""
        doc = self.session.doc
        if not self.autosave or doc is None or doc.path is None or doc.read_only:
            return
        if not self.session.has_unsaved_changes:
            return
        try:
            written = doc.save()
        except CocoConflictError:
            self.services.status(
                f"Autosave paused: {doc.path} changed on disk; Save (Ctrl+S) to choose what to do", 15_000
            )
            return
        except CocoSaveError as exc:
            self.services.status(f"Autosave failed: {exc}", 15_000)
            return
        self.session.mark_saved(written)
        self.update_title()

    def set_autosave(self, on: bool) -> None:
        self.autosave = on
        self.services.settings.setValue("autosave", on)

    def _on_image(self, image_id: int | None) -> None:
        if self._last_image is not None and image_id != self._last_image:
            self.autosave_now()
        self._last_image = image_id

    def may_discard_changes(self) -> bool:
        """Before replacing or closing a dirty document: save, discard or cancel."""
        if not self.session.has_unsaved_changes:
            return True
        answer = self.services.ask(
            "Unsaved changes", f"{self.title_name()} has unsaved changes.", ("Save", "Discard", "Cancel")
        )
        if answer == "Save":
            return self.save()
        return answer == "Discard"

    def title_name(self) -> str:
        project = self.session.project
        return project.title if project is not None else "The project"

    def update_title(self) -> None:
        """The title (the project's name, ``*`` while it has unsaved changes) and the journal warning."""
        doc = self.session.doc
        self._show_journal_state()
        if doc is None:
            self.window.setWindowTitle(APP_NAME)
            return
        read_only = " (read-only)" if doc.read_only else ""
        self.window.setWindowTitle(f"{self.title_name()}{read_only}[*] — {APP_NAME}")
        self.window.setWindowModified(self.session.has_unsaved_changes)

    def _show_journal_state(self) -> None:
        """While the document cannot journal its edits (a full or read-only disk), the status bar says so until
        a save succeeds; the first time, a message says it too."""
        doc = self.session.doc
        problem = doc.journal_error if doc is not None else None
        self.views.status.show_journal_problem(problem)
        if problem is not None and problem != self._journal_reported:
            self.services.report_error(
                f"{problem}.\nSave (Ctrl+S), or Save As… to another disk, to keep your edits safe."
            )
        self._journal_reported = problem

    def shutdown(self) -> None:
        self._timer.stop()
        self.lane.shutdown()

// Drag and drop on the wall operator's page (HTML5 drag and drop): a roster site onto a tile
// (place it), a tile onto another tile (swap them), a roster site onto the tile panel's
// polling list (add it). The page decides what each drop does through the callbacks.
//
//   installDragAndDrop({ onPlace(index, siteId), onSwap(from, to), onPollDrop(siteId) });
//
// Sources: roster rows `[data-testid="roster"] [data-site]`, non-empty tiles `[data-tile]`.
// Targets: tiles and `#poll-drop`; the one under the pointer gets the class `drop-hover`.

const SITE_TYPE = "application/x-huishang-site";
const TILE_TYPE = "application/x-huishang-tile";

function clearHover(except = null) {
  for (const el of document.querySelectorAll(".drop-hover")) {
    if (el !== except) el.classList.remove("drop-hover");
  }
}

function dropTarget(event) {
  return event.target.closest?.("[data-tile]") || event.target.closest?.("#poll-drop");
}

export function installDragAndDrop({ onPlace, onSwap, onPollDrop }) {
  document.addEventListener("dragstart", (event) => {
    const row = event.target.closest?.("[data-testid='roster'] [data-site]");
    const tile = event.target.closest?.("[data-tile]");
    if (row) {
      event.dataTransfer.setData(SITE_TYPE, row.dataset.site);
      event.dataTransfer.setData("text/plain", row.dataset.site);
      event.dataTransfer.effectAllowed = "copy";
    } else if (tile && tile.dataset.source) {
      event.dataTransfer.setData(TILE_TYPE, tile.dataset.tile);
      event.dataTransfer.setData("text/plain", tile.dataset.source);
      event.dataTransfer.effectAllowed = "move";
    } else if (tile) {
      event.preventDefault(); // nothing to move out of an empty tile
    }
  });

  document.addEventListener("dragover", (event) => {
    const target = dropTarget(event);
    if (!target) return;
    const types = [...event.dataTransfer.types];
    const tileDrag = types.includes(TILE_TYPE);
    if (!types.includes(SITE_TYPE) && !tileDrag) return;
    if (tileDrag && target.id === "poll-drop") return;
    event.preventDefault();
    event.dataTransfer.dropEffect = tileDrag ? "move" : "copy";
    clearHover(target);
    target.classList.add("drop-hover");
  });

  document.addEventListener("dragleave", (event) => {
    const target = dropTarget(event);
    if (target && !target.contains(event.relatedTarget)) target.classList.remove("drop-hover");
  });

  document.addEventListener("drop", (event) => {
    const target = dropTarget(event);
    clearHover();
    if (!target) return;
    event.preventDefault();
    const site = event.dataTransfer.getData(SITE_TYPE);
    const fromTile = event.dataTransfer.getData(TILE_TYPE);
    if (target.id === "poll-drop") {
      if (site) onPollDrop(site);
      return;
    }
    const index = Number(target.dataset.tile);
    if (fromTile !== "") onSwap(Number(fromTile), index);
    else if (site) onPlace(index, site);
  });

  document.addEventListener("dragend", () => clearHover());
}

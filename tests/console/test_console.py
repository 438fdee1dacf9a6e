"""The web console in a real browser (see conftest.py): sign-in, run list, run page, charts,
compare, data flow, live runs, injected payloads, 404; a screenshot of every page."""

from __future__ import annotations

from typing import Any

import pytest


def test_signin_and_signout(anon: Any, server: Any) -> None:
    c = anon
    page = c.page
    ctx = page.context
    # signed out: any page leads to the sign-in page
    page.goto(server.url + f"/run/{server.runs['mlp-a']}")
    page.wait_for_url("**/signin**")
    c.ready()
    assert page.locator("#signin-form").is_visible()
    assert page.locator("#runs").count() == 0
    c.shot("signin")
    page.fill("#api-key", "em_" + "x" * 43)
    page.click("button[type=submit]")
    page.wait_for_selector("#signin-error:has-text('not valid')")
    # the session cookie is HttpOnly: the page's script cannot read it
    page.fill("#api-key", server.key)
    page.click("button[type=submit]")
    page.wait_for_url(f"**/run/{server.runs['mlp-a']}")  # back where the visitor wanted to go
    c.ready()
    assert "em_session" not in page.evaluate("document.cookie")
    cookies = {k["name"]: k for k in ctx.cookies()}
    assert cookies["em_session"]["httpOnly"] and cookies["em_session"]["sameSite"] == "Strict"
    assert page.locator("#user-name").text_content() == "alice"
    page.click("#signout")
    page.wait_for_url("**/signin")
    page.goto(server.url + "/runs")
    page.wait_for_url("**/signin**")
    assert "em_session" not in {k["name"] for k in ctx.cookies()}


def row_names(page: Any) -> list[str]:
    return [str(x) for x in page.locator("#runs tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.runName)")]


def test_run_list_search_filter_sort(console: Any) -> None:
    page = console.goto("/runs")
    names = row_names(page)
    assert {"mlp-a", "mlp-b", "broken"} <= set(names)
    console.shot("runs")
    # folder tree: a folder shows only what is under it
    page.click("#folders a[data-folder='/alice/other']")
    page.wait_for_function("document.querySelector('#folder-path')?.textContent === '/alice/other'")
    console.ready()
    assert row_names(page) == ["broken"]
    console.goto("/runs")
    # search by name, by description, by label
    for q, want in (("mlp-", {"mlp-a", "mlp-b"}), ("raises on purpose", {"broken"})):
        page.fill("#search", q)
        page.wait_for_function("q => new URL(location.href).searchParams.get('q') === q", arg=q)
        page.wait_for_function(
            "n => document.querySelectorAll('#runs tbody tr').length === n", arg=len(want))
        assert set(row_names(page)) == want
    page.fill("#search", "")
    # status filter
    page.select_option("#status-filter", "Failed")
    page.wait_for_function("document.querySelectorAll('#runs tbody tr').length === 1")
    assert row_names(page) == ["broken"]
    assert page.locator("#runs tbody tr [data-status]").text_content() == "Failed"
    page.select_option("#status-filter", "")
    # sort by name, both ways
    page.fill("#search", "mlp-")
    page.wait_for_function("document.querySelectorAll('#runs tbody tr').length === 2")
    page.click("th[data-sort='name']")
    page.wait_for_function("new URL(location.href).searchParams.get('sort') === '-name'")
    page.wait_for_function("document.querySelector('#runs tbody tr').dataset.runName === 'mlp-b'")
    page.click("th[data-sort='name']")
    page.wait_for_function("document.querySelector('#runs tbody tr').dataset.runName === 'mlp-a'")


def test_run_page_and_hyperparameters(console: Any, server: Any) -> None:
    page = console.goto(f"/run/{server.runs['mlp-a']}")
    assert page.locator("#run-name").text_content().startswith("mlp-a")
    assert page.locator("#run-status").text_content() == "Complete"
    assert page.locator("#run-description").text_content() == "NumPy MLP on generated data"
    assert page.locator("#run-labels .chip").all_text_contents() == ["example", "numpy"]
    assert "Linux" in page.locator("#platform").text_content()
    console.shot("run")
    # the nested tree holds every hyperparameter; the search narrows it
    assert page.locator("#hparams li[data-key='model.hidden'] .val").text_content() == "32"
    page.fill("#hparam-search", "hidden")
    page.wait_for_selector("#hparams li[data-key='lr']", state="detached")
    keys = page.locator("#hparams li").evaluate_all("ls => ls.map(l => l.dataset.key)")
    assert set(keys) == {"hidden", "model", "model.hidden"}
    page.fill("#hparam-search", "0.1")
    page.wait_for_selector("#hparams li[data-key='lr']")
    assert page.locator("#hparams li[data-key='lr'] .val").text_content() == "0.1"


def test_failed_run_shows_error_and_traceback(console: Any, server: Any) -> None:
    page = console.goto(f"/run/{server.runs['broken']}")
    assert page.locator("#run-status").text_content() == "Failed"
    err = page.locator("#run-error").text_content()
    assert "diverged at step 5" in err and "Traceback" in err
    console.shot("run-failed")


def test_charts_match_the_runs_metrics(console: Any, server: Any) -> None:
    rid = server.runs["mlp-a"]
    with server.api() as c:
        series = c.get(f"/runs/{rid}/series").json()["series"]
    page = console.goto(f"/run/{rid}")
    charts = {ch["metric"]: ch for ch in console.charts()}
    want: dict[str, dict[str, int]] = {}
    for s in series:
        want.setdefault(s["name"], {})[s["type"]] = s["count"]
    assert set(charts) == set(want) == {"loss", "accuracy", "lr"}
    for name, ch in charts.items():
        # one legend entry and one drawn line per series, train/val/test overlaid
        assert sorted(ch["legend"]) == sorted(want[name]), name
        assert dict(zip(ch["legend"], ch["counts"])) == want[name], name
    assert page.locator(".chart[data-metric='loss'] canvas").count() == 1
    # the legend is the hover read-out: values appear under the cursor
    over = page.locator(".chart[data-metric='loss'] .u-over")
    over.scroll_into_view_if_needed()
    box = over.bounding_box()
    page.mouse.move(box["x"] + 5, box["y"] + 5)
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] / 2, steps=3)
    page.wait_for_function(r"""() => [...document.querySelectorAll(
        ".chart[data-metric='loss'] .u-legend .u-value")].some(v => /\d/.test(v.textContent))""")


def test_x_axis_switch_log_scale_and_zoom(console: Any, server: Any) -> None:
    rid = server.runs["mlp-a"]
    page = console.goto(f"/run/{rid}")
    loss = lambda: next(c for c in console.charts() if c["metric"] == "loss")  # noqa: E731
    assert loss()["x"] == "step" and loss()["xmax"] > 100
    page.select_option("#x-axis", "epoch")
    page.wait_for_function("window.emConsole.charts[0].describe().x === 'epoch'")
    assert 2.5 < loss()["xmax"] <= 3.5  # 3 epochs
    page.select_option("#x-axis", "time")
    page.wait_for_function("window.emConsole.charts[0].describe().x === 'time'")
    assert loss()["xmin"] > 1.7e9  # seconds since the epoch
    page.select_option("#x-axis", "step")
    page.check("#log-scale")
    page.wait_for_function("window.emConsole.charts.every(c => c.u.scales.y.distr === 3)")
    page.uncheck("#log-scale")
    # drag to zoom: the detail of that step range is fetched from the server
    with page.expect_request(lambda r: "/series/points" in r.url and "start=" in r.url):
        over = page.locator(".chart[data-metric='loss'] .u-over")
        over.scroll_into_view_if_needed()
        box = over.bounding_box()
        page.mouse.move(box["x"] + box["width"] * 0.3, box["y"] + 20)
        page.mouse.down()
        page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + 20, steps=5)
        page.mouse.up()
    page.wait_for_selector(".chart[data-metric='loss'] .hint:has-text('zoomed')")
    z = loss()
    assert 10 < z["xmin"] < z["xmax"] < 132
    console.shot("run-zoomed")


def test_compare_two_runs(console: Any, server: Any, flat: Any) -> None:
    page = console.goto("/runs?folder=/alice/examples")
    for name in ("mlp-a", "mlp-b"):
        page.check(f"#runs tr[data-run-name='{name}'] input.pick")
    page.click("#compare")
    page.wait_for_url("**/compare?ids=*")
    console.ready()
    with server.api() as c:
        a, b = (flat(c.get(f"/runs/{server.runs[n]}").json()["hparams"])
                for n in ("mlp-a", "mlp-b"))
    differ = {k for k in a.keys() | b.keys() if a.get(k) != b.get(k)}
    assert differ == {"lr", "hidden", "model.hidden", "name"}
    keys = "rs => rs.map(r => r.dataset.key)"
    shown = page.locator("#hparams-differ tbody tr").evaluate_all(keys)
    assert sorted(shown) == sorted(differ)
    folded = page.locator("#hparams-equal tbody tr").evaluate_all(keys)
    assert sorted(folded) == sorted(set(a) - differ)
    assert not page.locator("#hparams-equal tbody").is_visible()  # folded away
    charts = {ch["metric"]: ch for ch in console.charts()}
    assert sorted(charts["loss"]["legend"]) == sorted(
        f"{r} · {t}" for r in ("mlp-a", "mlp-b") for t in ("train", "val", "test"))
    assert page.locator("#parcoords polyline").count() == 2
    page.select_option("#final-metric", "val/accuracy")
    page.wait_for_selector("#parcoords text.axis-label:has-text('val/accuracy')")
    console.shot("compare")


def test_data_flow_to_the_artifact_and_back(console: Any, server: Any) -> None:
    rid = server.runs["mlp-a"]
    page = console.goto(f"/run/{rid}")
    edge = page.locator("#graph path.edge")
    assert edge.count() == 1 and edge.get_attribute("data-from") == rid
    aid = edge.get_attribute("data-to")
    page.click(f"#graph .node[data-id='{aid}']")
    page.wait_for_url(f"**/artifact/{aid}")
    console.ready()
    assert page.locator("#artifact-name").text_content().startswith("mlp-a-weights")
    with server.api() as c:
        art = c.get(f"/artifacts/{aid}").json()
    obj = art["objects"]["model/mlp.npz"]
    row = page.locator("#files tr[data-path='model/mlp.npz']")
    assert obj["sha256"] in row.text_content()
    with page.expect_download() as dl:
        row.locator("a").click()
    assert dl.value.suggested_filename == "mlp.npz"
    console.shot("artifact")
    page.click(f"#graph .node[data-id='{rid}']")
    page.wait_for_url(f"**/run/{rid}")
    console.ready()
    assert page.locator("#run-name").text_content().startswith("mlp-a")


def test_live_run_chart_grows(console: Any, live_run: str) -> None:
    page = console.goto(f"/run/{live_run}")
    assert page.locator("#run-status").text_content() == "Running"
    first = console.charts()[0]["counts"][0]
    assert first > 0
    # polled every 2 s: the chart grows without a reload (same document, same chart node)
    page.evaluate("document.querySelector('#charts').dataset.mark = 'same-document'")
    page.wait_for_function(
        "n => window.emConsole.charts[0].describe().counts[0] >= n + 10", arg=first,
        timeout=20_000)
    assert page.evaluate("document.querySelector('#charts').dataset.mark") == "same-document"
    console.shot("run-live")


def test_injected_payloads_are_text(console: Any, server: Any, payloads: list[str]) -> None:
    rid = server.runs["payload"]
    page = console.goto("/runs?folder=/alice/payloads")
    assert page.locator("#runs tbody tr .chip").all_text_contents() == payloads
    page = console.goto(f"/run/{rid}")
    assert page.locator("#run-name").text_content().startswith(payloads[0])
    assert page.locator("#run-description").text_content() == " ".join(payloads)
    assert page.locator("#run-labels .chip").all_text_contents() == payloads
    keys = page.locator("#hparams li").evaluate_all("ls => ls.map(l => l.dataset.key)")
    assert set(payloads) <= set(keys)
    assert {c["metric"] for c in console.charts()} == {payloads[1], "loss", "x"}
    assert payloads[1].replace("/", "|") in [lbl for c in console.charts() for lbl in c["legend"]]
    page.fill("#hparam-search", "onerror")
    page.wait_for_selector(f"#hparams li[data-key='{payloads[2]}']", state="detached")
    console.shot("run-payloads")
    page = console.goto(f"/compare?ids={rid},{server.runs['mlp-a']}")
    console.shot("compare-payloads")
    # nothing planted became an element or an attribute, and nothing ran
    planted = "document.querySelectorAll('[onerror],[onload],script:not([src])').length"
    assert page.evaluate(planted) == 0
    assert page.evaluate("window.__pwned") is None


@pytest.mark.parametrize("path", ["/run/no-such-run", "/artifact/no-such-artifact",
                                  "/no/such/page"])
def test_unknown_is_a_404_page(console: Any, path: str) -> None:
    page = console.goto(path)
    assert page.locator("#notfound h1").text_content() == "Not found"
    console.shot("notfound-" + path.split("/")[1])


def test_phone_width(console: Any, server: Any) -> None:
    page = console.page
    page.set_viewport_size({"width": 390, "height": 844})
    for name, path in (("runs-phone", "/runs"), ("run-phone", f"/run/{server.runs['mlp-a']}")):
        console.goto(path)
        # nothing wider than the screen but what scrolls inside its own box
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        console.shot(name)
    assert page.locator(".chart").first.bounding_box()["width"] <= 390


def test_metric_column_picked_in_the_list(console: Any, server: Any) -> None:
    page = console.goto("/runs?folder=/alice/examples")
    page.click("#columns-button")
    page.check("#columns-menu input[data-col='metric:val/accuracy']")
    page.wait_for_selector("th[data-sort='metric:val/accuracy']")
    page.wait_for_function("new URL(location.href).searchParams.get('cols') === "
                           "'metric:val/accuracy'")
    with server.api() as c:
        for name in ("mlp-a", "mlp-b"):
            last = c.get(f"/runs/{server.runs[name]}").json()["last"]["val/accuracy"]
            cells = page.locator(f"#runs tr[data-run-name='{name}'] td").all_text_contents()
            assert float(cells[-1]) == float(f"{last:.6g}"), cells  # 6 significant digits
    console.shot("runs-columns")


def test_em_ui_local_directory_no_sign_in(browser: Any, em_ui: str, shots: Any) -> None:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, bypass_csp=True)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(em_ui + "/")
    page.wait_for_selector("main[data-ready='1']", timeout=20_000)
    assert "/signin" not in page.url  # local mode: no sign-in page
    assert page.locator("#signout").count() == 0
    assert page.locator("#who .badge").text_content() == "local"
    # the mirror ingests the directory's runs; the list shows them (reload until it has)
    for _ in range(60):
        if page.locator("#runs tr[data-run-name='mlp-a']").count():
            break
        page.wait_for_timeout(500)
        page.reload()
        page.wait_for_selector("main[data-ready='1']", timeout=20_000)
    page.screenshot(path=str(shots / "em-ui-runs.png"), full_page=True)
    page.click("#runs tr[data-run-name='mlp-a'] a")
    page.wait_for_url("**/run/*")
    page.wait_for_selector("main[data-ready='1']", timeout=20_000)
    assert page.locator("#run-name").text_content().startswith("mlp-a")
    page.wait_for_selector(".chart[data-metric='loss'][data-drawn='1']")
    page.screenshot(path=str(shots / "em-ui-run.png"), full_page=True)
    assert not errors, errors
    ctx.close()


def test_sort_by_a_hyperparameter_column(console: Any) -> None:
    page = console.goto("/runs?folder=/alice/examples")
    page.click("#columns-button")
    page.check("#columns-menu input[data-col='hparam:lr']")
    page.wait_for_selector("th[data-sort='hparam:lr']")
    lr = "tr => tr.querySelector('td:last-child').textContent"
    assert sorted(page.locator("#runs tbody tr").evaluate_all(f"rs => rs.map({lr})")) == \
        ["0.05", "0.1"]
    page.click("th[data-sort='hparam:lr']")  # highest first
    page.wait_for_function("new URL(location.href).searchParams.get('sort') === '-hparam:lr'")
    page.wait_for_function("document.querySelector('#runs tbody tr').dataset.runName === 'mlp-a'")
    page.click("th[data-sort='hparam:lr']")
    page.wait_for_function("document.querySelector('#runs tbody tr').dataset.runName === 'mlp-b'")


def test_training_log_search_and_chart_point_to_its_line(console: Any, server: Any,
                                                          caffe_log: Any) -> None:
    """An `em caffe` run: its log in full, a search, and a chart point leading to its line."""
    lines = caffe_log.read_text().splitlines()
    total = ".toolbar:has(#log-search) .muted"
    page = console.goto(f"/run/{server.runs['caffe']}")
    page.wait_for_selector("#log [data-line='1']")
    assert page.locator(total).text_content() == f"{len(lines)} lines"
    shown = page.locator("#log > div").evaluate_all(
        "ds => ds.slice(0, 5).map(d => d.childNodes[1].textContent)")
    assert shown == lines[:5]
    console.shot("run-log")
    # search: the count and every line shown match the log itself
    query = "Test net output #0"
    matching = [ln for ln in lines if query in ln]
    page.fill("#log-search", query)
    page.wait_for_function("n => document.querySelectorAll('#log > div').length === n",
                           arg=len(matching))
    assert page.locator(total).text_content() == f"{len(matching)} lines matching"
    found = page.locator("#log > div").evaluate_all(
        "ds => ds.map(d => [+d.dataset.line, d.childNodes[1].textContent])")
    assert [t for _, t in found] == matching
    assert all(lines[n - 1] == t for n, t in found)  # the numbers are the lines' own
    # click a point in the middle of the loss chart: the log scrolls to that iteration's line
    xy = page.evaluate("""() => {
        const u = window.emConsole.charts.find(c => c.el.dataset.metric === 'loss').u;
        const k = Math.floor(u.data[0].length / 2);
        const ys = u.data.slice(1).find(ys => ys[k] != null);
        return {step: u.data[0][k], x: u.valToPos(u.data[0][k], 'x'), y: u.valToPos(ys[k], 'y')};
    }""")
    over = page.locator(".chart[data-metric='loss'] .u-over")
    over.evaluate("e => e.scrollIntoView({block: 'center'})")  # clear of the sticky header
    box = over.bounding_box()
    # a loss near 0 is drawn on the plot's lower edge: stay inside it (uPlot picks the point
    # nearest in x)
    x, y = box["x"] + xy["x"], box["y"] + min(max(xy["y"], 3), box["height"] - 3)
    page.mouse.move(box["x"] + 5, box["y"] + 5)  # enter the plot first: uPlot tracks from there
    page.mouse.move(x, y, steps=3)
    page.mouse.click(x, y)
    hit = page.wait_for_selector("#log > div.hit")
    n = int(hit.get_attribute("data-line"))
    assert f"Iteration {int(xy['step'])}," in lines[n - 1]
    assert hit.evaluate("d => d.childNodes[1].textContent") == lines[n - 1]
    console.shot("run-log-point")

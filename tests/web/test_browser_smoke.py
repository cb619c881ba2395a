from tests.web.conftest import Browser, Server


def test_the_library_is_indexed(server: Server) -> None:
    near = server.api("/duplicates?kind=near")["items"]
    print(near)
    print(server.api("/duplicates")["items"])
    print(server.api("/people"))


def test_a_page(browser: Browser) -> None:
    page = browser.open("/schema/swagger")
    browser.check(page, "swagger")

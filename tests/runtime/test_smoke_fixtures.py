from benchbus.demo import DemoSettings, build


def test_round_trip(make_settings, serve, bus):
    serve(build, make_settings(DemoSettings))
    assert bus.call("demo", "echo", {"text": "hi", "count": 2}) == {"text": "hi", "count": 2}


def test_spawned_service(spawn, bus):
    spawn(["python", "-m", "benchbus.demo"], segment="demo")
    assert bus.call("demo", "increment") == {"value": 1}

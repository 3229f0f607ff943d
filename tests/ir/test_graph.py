import json

import networkx as nx

import dgmdsl
from dgmdsl.ir import edge_kinds
from dgmdsl.ir.export import FORMATS
from tests.conftest import SHARED


def spec(name):
    return dgmdsl.load(SHARED / "specs" / f"{name}.dgm")


def test_vae_edges():
    g = spec("vae")["VAE"].graph
    assert isinstance(g, nx.DiGraph)
    assert g.edges["z", "x"]["kind"] == "stochastic"
    assert g.edges["x", "z"]["kind"] == "guide"
    assert g.edges["dec", "x"]["kind"] == "net" and g.edges["enc", "z"]["kind"] == "net"
    assert g.nodes["x"]["role"] == "data" and g.nodes["z"]["role"] == "latent"
    assert g.nodes["x"]["shape"] == [784] and g.nodes["z"]["dist"] == "Normal"
    assert g.nodes["dec"]["role"] == "net"


def test_hvae_chain():
    g = spec("hvae")["HierarchicalVAE"].graph
    assert g.has_edge("z2", "z1") and g.has_edge("z1", "x")
    assert "guide" in edge_kinds(g.edges["x", "z1"]["kind"])
    assert "guide" in edge_kinds(g.edges["z1", "z2"]["kind"])


def test_model_and_guide_edge_same_direction_carry_both_kinds():
    text = """model M {
        data x : real[2]
        latent z : real[2]
        latent w : real[2]
        net e = MLP(hidden = [4])
        z ~ Normal(0, 1)
        w ~ Normal(z, 1)
        x ~ Normal(w, 1)
        guide {
            z ~ Normal(e(x))
            w ~ Normal(z, 1)
        }
    }"""
    g = dgmdsl.loads(text)["M"].graph
    assert set(edge_kinds(g.edges["z", "w"]["kind"])) == {"stochastic", "guide"}


def test_sprinkler_structure_and_roles():
    g = spec("sprinkler")["Sprinkler"].graph
    assert set(g.edges) == {("cloudy", "sprinkler"), ("cloudy", "rain"), ("sprinkler", "wet"), ("rain", "wet")}
    assert all(d["role"] == "data" for _, d in g.nodes(data=True))


def test_gan_critic_and_flow_nodes():
    g = spec("bigan")["BiGAN"].graph
    assert g.nodes["D"]["role"] == "critic" and g.has_edge("x", "D") and g.has_edge("z", "D")
    assert g.nodes["x"]["role"] == "data" and g.nodes["x"]["dist"] == "implicit"
    g = spec("realnvp")["RealNVP"].graph
    assert g.nodes["f"]["role"] == "flow" and g.has_edge("f", "x") and g.has_edge("z", "x")


def test_exports():
    g = spec("vae")["VAE"].graph
    assert '"z" -> "x"' in FORMATS["dot"](g)
    data = json.loads(FORMATS["json"](g))
    assert {"source": "x", "target": "z", "kind": "guide"} in data["edges"]
    assert "<graphml" in FORMATS["graphml"](g)


def test_topological_order():
    ir = spec("hvae")["HierarchicalVAE"].ir
    order = ir.topological_vars()
    assert order.index("z2") < order.index("z1") < order.index("x")

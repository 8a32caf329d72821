"""The one provider layer shared by models under test and LLM judges (DESIGN.md).

Heavy SDKs are imported only inside the provider module that needs them.
"""

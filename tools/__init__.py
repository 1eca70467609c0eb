"""carl_studio.tools"""
